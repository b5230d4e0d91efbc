package tlsx

import (
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/secret"
	"github.com/herald-proxy/herald/internal/stats"
)

// Server is a built DownstreamTlsContext: the crypto/tls server config
// shared by every connection of its filter chain. With SDS secrets the
// config is rebuilt whenever one of them changes and swapped in
// atomically: a handshake loads it once, so new handshakes see the new
// certificate while open connections keep the one they negotiated.
type Server struct {
	// Immutable after BuildServer:
	c              *common
	required       bool
	disableTickets bool

	// state is the current config; nil while SDS secrets are not ready.
	state atomic.Pointer[serverState]

	// updated are the ssl_context_update_by_sds counters of the listeners
	// using the context; updates is how many SDS installs there were, so
	// that a listener tracking the context late still counts them all.
	// Guarded by mu.
	mu      sync.Mutex
	updated []*stats.Counter
	updates uint64
}

// serverState is one built crypto/tls config. Immutable.
type serverState struct {
	config *tls.Config
	// noALPN is config without NextProtos, for clients that offer ALPN
	// protocols none of which are configured: BoringSSL (Envoy) then
	// completes the handshake without ALPN, where crypto/tls would fail it.
	noALPN *tls.Config
	certs  []tls.Certificate
}

var downstreamFields = []string{
	"common_tls_context", "require_client_certificate",
	"disable_stateless_session_resumption", "disable_stateful_session_resumption",
}

var downstreamIssues = map[string]string{
	"session_ticket_keys":                   "#5",
	"session_ticket_keys_sds_secret_config": "#5",
	"ocsp_staple_policy":                    "#5",
}

// BuildServer builds a DownstreamTlsContext; path is the YAML path of the
// message, for errors. Files are read now (Envoy reads them at load).
// secrets resolves tls_certificate_sds_secret_configs and the validation
// context's SDS configs (static secrets by name, SDS providers); nil
// refuses them.
//
// Defaults are Envoy's: TLS 1.2 to 1.3, Envoy's server cipher list and
// curves (X25519, P-256), session tickets on (Go rotates the ticket key
// itself, as BoringSSL does without session_ticket_keys). herald has no
// server-side session cache, so disable_stateful_session_resumption is
// accepted and changes nothing.
func BuildServer(dc *tlsv3.DownstreamTlsContext, path string, secrets *secret.Manager) (*Server, error) {
	errs := configerr.RejectUnlisted(dc, path, downstreamIssues, downstreamFields...)
	cpath := path + ".common_tls_context"
	c, cerrs := buildCommon(dc.GetCommonTlsContext(), cpath, true, secrets)
	errs = append(errs, cerrs...)
	if len(c.certs) == 0 && len(c.certProviders) == 0 && len(cerrs) == 0 {
		// Envoy: "No TLS certificates found for server context".
		errs = append(errs, configerr.At(cpath+".tls_certificates", "a server TLS context needs at least one certificate"))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	s := &Server{c: c, required: dc.GetRequireClientCertificate().GetValue(), disableTickets: dc.GetDisableStatelessSessionResumption()}
	if !c.dynamic() {
		s.state.Store(s.build(c.certs, c.v))
		return s, nil
	}
	var initErr error
	secrets.Follow(c.providers(), secret.WeakWatcher(s), func() {
		certs, v, ok, err := c.secretValues(nil, nil)
		switch {
		case err != nil:
			initErr = err
		case ok:
			// Envoy runs the update callback at once when the secret is
			// there, counting ssl_context_update_by_sds.
			s.state.Store(s.build(certs, v))
			s.updates++
		}
	})
	if initErr != nil {
		return nil, initErr
	}
	return s, nil
}

// build makes the crypto/tls config of certs and v.
func (s *Server) build(certs []tls.Certificate, v *validator) *serverState {
	c := s.c
	st := &serverState{certs: certs}
	cfg := &tls.Config{
		MinVersion:             c.params.min,
		MaxVersion:             c.params.max,
		CipherSuites:           c.params.ciphers,
		CurvePreferences:       c.params.curves,
		NextProtos:             c.alpn,
		GetCertificate:         st.getCertificate,
		SessionTicketsDisabled: s.disableTickets,
	}
	required := s.required
	if v != nil {
		required = required || v.required
	}
	if v != nil || required {
		// crypto/tls asks for a certificate; the validator decides, so each
		// refusal counts its own fail_verify_* stat.
		cfg.ClientAuth = tls.RequestClientCert
		val := validator{required: required}
		if v != nil {
			val = *v
			val.required = required
		}
		cfg.VerifyConnection = val.verify
	}
	if len(c.alpn) > 0 {
		st.noALPN = cfg.Clone()
		st.noALPN.NextProtos = nil
		cfg.GetConfigForClient = st.configForClient
	}
	st.config = cfg
	return st
}

// PrepareSecret implements secret.Watcher: the context rebuilt with s as
// p's secret; a secret that does not build rejects the update.
func (s *Server) PrepareSecret(p *secret.Provider, sec *tlsv3.Secret) (func(), error) {
	certs, v, ok, err := s.c.secretValues(p, sec)
	if err != nil {
		return nil, err
	}
	if !ok {
		return func() {}, nil
	}
	st := s.build(certs, v)
	return func() {
		s.state.Store(st)
		s.mu.Lock()
		s.updates++
		for _, c := range s.updated {
			c.Inc()
		}
		s.mu.Unlock()
	}, nil
}

// configForClient drops ALPN for a client whose offered protocols do not
// overlap the configured ones.
func (st *serverState) configForClient(hi *tls.ClientHelloInfo) (*tls.Config, error) {
	if len(hi.SupportedProtos) == 0 {
		return nil, nil
	}
	for _, p := range hi.SupportedProtos {
		if slices.Contains(st.config.NextProtos, p) {
			return nil, nil
		}
	}
	return st.noALPN, nil
}

// getCertificate picks the certificate as Envoy does with several
// tls_certificates: one valid for the SNI whose key type the client
// supports, else the first whose key type it supports, else the first.
func (st *serverState) getCertificate(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(st.certs) == 1 {
		return &st.certs[0], nil
	}
	for i := range st.certs {
		if hi.SupportsCertificate(&st.certs[i]) == nil {
			return &st.certs[i], nil
		}
	}
	if hi.ServerName != "" {
		noSNI := *hi
		noSNI.ServerName = ""
		for i := range st.certs {
			if noSNI.SupportsCertificate(&st.certs[i]) == nil {
				return &st.certs[i], nil
			}
		}
	}
	return &st.certs[0], nil
}

// Config returns the server's current crypto/tls config (nil while SDS
// secrets are not ready); do not modify it.
func (s *Server) Config() *tls.Config {
	if st := s.state.Load(); st != nil {
		return st.config
	}
	return nil
}

// Track counts the context's SDS installs, past and future, into st (the
// listener's server_ssl_socket_factory.ssl_context_update_by_sds). Called
// once per listener, never per connection.
func (s *Server) Track(st *Stats) {
	if st == nil || st.ContextUpdateBySDS == nil {
		return
	}
	s.mu.Lock()
	s.updated = append(s.updated, st.ContextUpdateBySDS)
	st.ContextUpdateBySDS.Add(s.updates)
	s.mu.Unlock()
}

// Handshake runs the server handshake on c, bounded by deadline (zero: no
// bound), and counts it into st. On success it returns the TLS connection
// with the deadline cleared; on failure the caller closes c.
func (s *Server) Handshake(c net.Conn, deadline time.Time, st *Stats) (*tls.Conn, error) {
	state := s.state.Load()
	if state == nil {
		if st.SecretsNotReady != nil {
			st.SecretsNotReady.Inc()
		}
		return nil, ErrSecretsNotReady
	}
	tc := tls.Server(c, state.config)
	if !deadline.IsZero() {
		_ = c.SetDeadline(deadline)
	}
	err := tc.Handshake()
	if err != nil {
		var ne net.Error
		if !(errors.As(err, &ne) && ne.Timeout()) {
			st.countFailure(err)
		}
		return nil, err
	}
	if !deadline.IsZero() {
		_ = c.SetDeadline(time.Time{})
	}
	cs := tc.ConnectionState()
	st.countHandshake(&cs)
	return tc, nil
}
