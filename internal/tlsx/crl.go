package tlsx

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// ErrRevoked is the cause of a chain refused by a CRL; the handshake fails
// with ErrVerifyChain (Envoy counts revocation under fail_verify_error, as
// OpenSSL reports X509_V_ERR_CERT_REVOKED from the chain verification).
var ErrRevoked = errors.New("tls: certificate revoked")

// buildCRLs parses every PEM "X509 CRL" block of the crl data source
// (Envoy: "If this DataSource contains multiple CRLs, all of them will be
// used",
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/transport_sockets/tls/v3/common.proto#extensions-transport-sockets-tls-v3-certificatevalidationcontext).
func buildCRLs(ds *corev3.DataSource, path string, errs *configerr.List) []*x509.RevocationList {
	data, ferr := LoadDataSource(ds, path)
	if ferr != nil {
		*errs = append(*errs, ferr)
		return nil
	}
	var out []*x509.RevocationList
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "X509 CRL" {
			continue
		}
		crl, err := x509.ParseRevocationList(b.Bytes)
		if err != nil {
			*errs = append(*errs, configerr.At(path, "invalid CRL: %v", err))
			continue
		}
		out = append(out, crl)
	}
	if len(out) == 0 && len(*errs) == 0 {
		// Envoy: "Failed to load CRL from <source>".
		*errs = append(*errs, configerr.At(path, "no PEM CRL (\"X509 CRL\" block) found"))
	}
	return out
}

// checkCRLs checks a verified chain against the CRLs as OpenSSL does with
// X509_V_FLAG_CRL_CHECK, plus X509_V_FLAG_CRL_CHECK_ALL unless
// only_verify_leaf_cert_crl: every certificate checked needs a current CRL
// from its issuer ("if a CRL is provided for any certificate authority in
// a trust chain, a CRL must be provided for all certificate authorities in
// that chain. Failure to do so will result in verification failure for
// both revoked and unrevoked certificates from that chain"), and must not
// be listed in it. The trust anchor itself is not checked. The chain is
// accepted when any of chains passes.
func (v *validator) checkCRLs(chains [][]*x509.Certificate) error {
	var first error
	for _, chain := range chains {
		err := v.checkChainCRLs(chain, time.Now())
		if err == nil {
			return nil
		}
		if first == nil {
			first = err
		}
	}
	return first
}

func (v *validator) checkChainCRLs(chain []*x509.Certificate, now time.Time) error {
	last := len(chain) - 1 // the anchor
	if v.onlyLeafCRL {
		last = min(last, 1)
	}
	for i := 0; i < last; i++ {
		cert, issuer := chain[i], chain[i+1]
		crl := v.crlFor(issuer)
		if crl == nil {
			return fmt.Errorf("unable to get certificate CRL for %q", cert.Subject.CommonName)
		}
		if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
			return fmt.Errorf("CRL of %q has expired", issuer.Subject.CommonName)
		}
		for _, r := range crl.RevokedCertificateEntries {
			if r.SerialNumber != nil && r.SerialNumber.Cmp(cert.SerialNumber) == 0 {
				return fmt.Errorf("%w: %q (serial %s)", ErrRevoked, cert.Subject.CommonName, cert.SerialNumber)
			}
		}
	}
	return nil
}

// crlFor returns the CRL issued and signed by issuer, or nil.
func (v *validator) crlFor(issuer *x509.Certificate) *x509.RevocationList {
	for _, crl := range v.crls {
		if bytes.Equal(crl.RawIssuer, issuer.RawSubject) && crl.CheckSignatureFrom(issuer) == nil {
			return crl
		}
	}
	return nil
}
