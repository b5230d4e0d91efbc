package tlsx

import (
	"context"
	"crypto/tls"
	"errors"
	"sync"

	"github.com/herald-proxy/herald/internal/stats"
)

// Stats are Envoy's ssl.* stats of one scope: listener.<address>.ssl.* for
// a listener, cluster.<name>.ssl.* for a cluster
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/stats#tls-statistics).
// Safe for concurrent use; counting a handshake takes no lock.
type Stats struct {
	ConnectionError    *stats.Counter
	Handshake          *stats.Counter
	SessionReused      *stats.Counter
	NoCertificate      *stats.Counter
	FailVerifyNoCert   *stats.Counter
	FailVerifyError    *stats.Counter
	FailVerifySAN      *stats.Counter
	FailVerifyCertHash *stats.Counter

	// OCSP stapling (servers only; Envoy's selectTlsContext):
	// ocsp_staple_requests counts clients that sent status_request,
	// ocsp_staple_responses those that got a staple, ocsp_staple_omitted
	// those that did not, ocsp_staple_failed handshakes the staple policy
	// refused.
	OCSPStapleRequests  *stats.Counter
	OCSPStapleResponses *stats.Counter
	OCSPStapleOmitted   *stats.Counter
	OCSPStapleFailed    *stats.Counter

	// The socket factory's SDS stats (nil from NewStats): Envoy's
	// <scope>.server_ssl_socket_factory.* for a listener and
	// <scope>.client_ssl_socket_factory.* for a cluster
	// (https://www.envoyproxy.io/docs/envoy/latest/configuration/security/secret#statistics).
	// ContextUpdateBySDS is ssl_context_update_by_sds; SecretsNotReady is
	// downstream_context_secrets_not_ready or
	// upstream_context_secrets_not_ready (a connection refused because its
	// context has no secret yet).
	ContextUpdateBySDS *stats.Counter
	SecretsNotReady    *stats.Counter

	// ssl.ciphers.<name>, ssl.versions.<name>, ssl.curves.<name>: created
	// on first use, as Envoy does, so unused names do not show up.
	ciphers  map[uint16]*lazyCounter
	versions map[uint16]*lazyCounter
	curves   map[tls.CurveID]*lazyCounter
	unknown  *lazyCounter

	// ctx is the handshake context carrying these stats to certificate
	// selection (ssl.ocsp_staple_*), built once by NewStats: a context is
	// immutable, so every handshake of the listener shares it.
	ctx context.Context
}

// handshakeContext is the context a server handshake counting into s
// runs with. It has no Done channel, so crypto/tls starts no goroutine
// for it.
func (s *Stats) handshakeContext() context.Context {
	if s.ctx != nil {
		return s.ctx
	}
	return withStats(s)
}

type lazyCounter struct {
	once  sync.Once
	scope stats.Scope
	name  string
	c     *stats.Counter
}

func (l *lazyCounter) inc() {
	l.once.Do(func() { l.c = l.scope.Counter(l.name) })
	l.c.Inc()
}

// NewStats creates the ssl.* stats under scope (which ends with ".", e.g.
// "listener.127.0.0.1_443.").
func NewStats(scope stats.Scope) *Stats {
	sc := scope.Scope("ssl.")
	s := &Stats{
		ConnectionError:    sc.Counter("connection_error"),
		Handshake:          sc.Counter("handshake"),
		SessionReused:      sc.Counter("session_reused"),
		NoCertificate:      sc.Counter("no_certificate"),
		FailVerifyNoCert:   sc.Counter("fail_verify_no_cert"),
		FailVerifyError:    sc.Counter("fail_verify_error"),
		FailVerifySAN:      sc.Counter("fail_verify_san"),
		FailVerifyCertHash: sc.Counter("fail_verify_cert_hash"),
		// Envoy: source/common/tls/stats.h, ALL_SSL_STATS.
		OCSPStapleRequests:  sc.Counter("ocsp_staple_requests"),
		OCSPStapleResponses: sc.Counter("ocsp_staple_responses"),
		OCSPStapleOmitted:   sc.Counter("ocsp_staple_omitted"),
		OCSPStapleFailed:    sc.Counter("ocsp_staple_failed"),
		ciphers:             map[uint16]*lazyCounter{},
		versions:            map[uint16]*lazyCounter{},
		curves:              map[tls.CurveID]*lazyCounter{},
	}
	for id, n := range cipherNames {
		s.ciphers[id] = &lazyCounter{scope: sc, name: "ciphers." + n}
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11, tls.VersionTLS12, tls.VersionTLS13} {
		s.versions[v] = &lazyCounter{scope: sc, name: "versions." + VersionName(v)}
	}
	for _, id := range []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP384, tls.CurveP521, tls.X25519MLKEM768} {
		s.curves[id] = &lazyCounter{scope: sc, name: "curves." + CurveName(id)}
	}
	s.unknown = &lazyCounter{scope: sc, name: "ciphers.unknown_ssl_cipher"}
	s.ctx = withStats(s)
	return s
}

// NewServerStats is NewStats plus a listener's server_ssl_socket_factory.*.
func NewServerStats(scope stats.Scope) *Stats {
	s := NewStats(scope)
	f := scope.Scope("server_ssl_socket_factory.")
	s.ContextUpdateBySDS = f.Counter("ssl_context_update_by_sds")
	s.SecretsNotReady = f.Counter("downstream_context_secrets_not_ready")
	return s
}

// NewClientStats is NewStats plus a cluster's client_ssl_socket_factory.*.
func NewClientStats(scope stats.Scope) *Stats {
	s := NewStats(scope)
	f := scope.Scope("client_ssl_socket_factory.")
	s.ContextUpdateBySDS = f.Counter("ssl_context_update_by_sds")
	s.SecretsNotReady = f.Counter("upstream_context_secrets_not_ready")
	return s
}

// countHandshake is Envoy's ContextImpl::logHandshake: handshake,
// session_reused, the cipher, version and curve, and no_certificate when
// the peer sent none.
func (s *Stats) countHandshake(cs *tls.ConnectionState) {
	s.Handshake.Inc()
	if cs.DidResume {
		s.SessionReused.Inc()
	}
	if c := s.ciphers[cs.CipherSuite]; c != nil {
		c.inc()
	} else {
		s.unknown.inc()
	}
	if c := s.versions[cs.Version]; c != nil {
		c.inc()
	}
	if c := s.curves[cs.CurveID]; c != nil {
		c.inc()
	}
	if len(cs.PeerCertificates) == 0 {
		s.NoCertificate.Inc()
	}
}

// countFailure counts a failed handshake: connection_error, and the
// fail_verify_* stat of a refused certificate.
func (s *Stats) countFailure(err error) {
	s.countVerify(err)
	s.ConnectionError.Inc()
}

// countVerify counts the fail_verify_* stat of a refused certificate (none
// for other errors); an ACCEPT_UNTRUSTED connection counts its failure
// this way and goes on.
func (s *Stats) countVerify(err error) {
	switch {
	case errors.Is(err, ErrNoCertificate):
		s.FailVerifyNoCert.Inc()
	case errors.Is(err, ErrVerifyChain):
		s.FailVerifyError.Inc()
	case errors.Is(err, ErrVerifySAN):
		s.FailVerifySAN.Inc()
	case errors.Is(err, ErrVerifyHash):
		s.FailVerifyCertHash.Inc()
	}
}
