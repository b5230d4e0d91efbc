package tlsx

import (
	"crypto/tls"
	"errors"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/secret"
)

// ErrSecretsNotReady fails a handshake on a TLS context whose SDS secrets
// have not all arrived yet (Envoy's NotReadySslSocket, counted as
// downstream_context_secrets_not_ready / upstream_context_secrets_not_ready).
var ErrSecretsNotReady = errors.New("tls: SDS secrets are not ready")

// secretValues returns the certificates and validator of c with the SDS
// secrets as installed, except that s stands for p's (the candidate being
// prepared; p nil: none). ok is false while some secret has not arrived.
// A secret that does not build is an error naming the secret and field.
func (c *common) secretValues(p *secret.Provider, s *tlsv3.Secret) (certs []tls.Certificate, v *validator, ok bool, err error) {
	current := func(q *secret.Provider) *tlsv3.Secret {
		if q == p {
			return s
		}
		return q.Current()
	}
	if len(c.slots) > 0 {
		certs = make([]tls.Certificate, 0, len(c.slots))
		for _, sl := range c.slots {
			if sl.prov == nil {
				certs = append(certs, sl.static)
				continue
			}
			sec := current(sl.prov)
			if sec == nil {
				return nil, nil, false, nil
			}
			cert, errs := certificateFromSecret(sec, sl.path)
			if err := errs.Err(); err != nil {
				return nil, nil, false, err
			}
			certs = append(certs, cert)
		}
	} else {
		certs = c.certs
	}
	v = c.v
	if c.vcProvider != nil {
		sec := current(c.vcProvider)
		if sec == nil {
			return nil, nil, false, nil
		}
		vv, verrs := validatorFromSecret(sec, c.vcDefault, c.vcPath)
		if err := verrs.Err(); err != nil {
			return nil, nil, false, err
		}
		v = vv
	}
	return certs, v, true, nil
}
