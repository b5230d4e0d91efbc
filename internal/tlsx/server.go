package tlsx

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
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
	// fullScan is full_scan_certs_on_sni_mismatch; policy is
	// ocsp_staple_policy.
	fullScan bool
	policy   tlsv3.DownstreamTlsContext_OcspStaplePolicy

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
	sel    *certSelector
	// soft is the ACCEPT_UNTRUSTED validator whose checks run after the
	// handshake, only to count their stats; nil otherwise.
	soft *validator
}

var downstreamFields = []string{
	"common_tls_context", "require_client_certificate",
	"disable_stateless_session_resumption", "disable_stateful_session_resumption",
	"full_scan_certs_on_sni_mismatch", "ocsp_staple_policy",
}

var downstreamIssues = map[string]string{
	"session_ticket_keys":                   "#5",
	"session_ticket_keys_sds_secret_config": "#5",
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
	s := &Server{
		c:              c,
		required:       dc.GetRequireClientCertificate().GetValue(),
		disableTickets: dc.GetDisableStatelessSessionResumption(),
		// Envoy: full_scan_certs_on_sni_mismatch defaults to false
		// (server_context_config_impl.cc, PROTOBUF_GET_WRAPPED_OR_DEFAULT).
		fullScan: dc.GetFullScanCertsOnSniMismatch().GetValue(),
		policy:   dc.GetOcspStaplePolicy(),
	}
	var ocsp []*ocspResponse
	if !c.dynamic() && len(errs) == 0 {
		var oerrs configerr.List
		ocsp, oerrs = s.staples(c.certs, c.certPaths)
		errs = append(errs, oerrs...)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	if !c.dynamic() {
		s.state.Store(s.build(c.certs, ocsp, c.v))
		return s, nil
	}
	var initErr error
	secrets.Follow(c.providers(), secret.WeakWatcher(s), func() {
		certs, v, ok, err := c.secretValues(nil, nil)
		if err == nil && ok {
			var st *serverState
			if st, err = s.buildSecrets(certs, v); err == nil {
				// Envoy runs the update callback at once when the secret
				// is there, counting ssl_context_update_by_sds.
				s.state.Store(st)
				s.updates++
			}
		}
		if err != nil {
			initErr = err
		}
	})
	if initErr != nil {
		return nil, initErr
	}
	return s, nil
}

// staples parses and checks the OCSP staples of certs (their
// OCSPStaple, paths[i] the YAML path of certs[i]) as Envoy's
// ServerContextImpl does when it loads them
// (source/common/tls/server_context_impl.cc): a must-staple certificate
// needs a response, ocsp_staple_policy MUST_STAPLE needs one for every
// certificate, and a response must parse and be for its certificate's
// serial number. An expired response is accepted here; the policy decides
// per handshake.
func (s *Server) staples(certs []tls.Certificate, paths []string) ([]*ocspResponse, configerr.List) {
	var errs configerr.List
	out := make([]*ocspResponse, len(certs))
	for i := range certs {
		leaf, p := certs[i].Leaf, paths[i]
		if len(certs[i].OCSPStaple) == 0 {
			switch {
			case leaf != nil && isMustStaple(leaf):
				errs = append(errs, configerr.At(p, "OCSP response is required for must-staple certificate").
					WithHint("set ocsp_staple: the certificate has the TLS feature status_request (RFC 7633)"))
			case s.policy == tlsv3.DownstreamTlsContext_MUST_STAPLE:
				errs = append(errs, configerr.At(p, "Required OCSP response is missing from TLS context").
					WithHint("ocsp_staple_policy is MUST_STAPLE"))
			}
			continue
		}
		r, err := parseOCSPResponse(certs[i].OCSPStaple)
		if err != nil {
			errs = append(errs, configerr.At(p+".ocsp_staple", "%v", err))
			continue
		}
		if leaf == nil || !r.matches(leaf) {
			errs = append(errs, configerr.At(p+".ocsp_staple", "OCSP response does not match its TLS certificate").
				WithHint("the response's serial number is not the certificate's"))
			continue
		}
		if r.thisUpdate.After(time.Now()) {
			// Envoy warns and keeps it (OcspResponseWrapperImpl).
			slog.Warn("OCSP Response thisUpdate field is set in the future", "path", p, "this_update", r.thisUpdate)
		}
		out[i] = r
	}
	return out, errs
}

// buildSecrets is build for certificates from SDS: their staples are
// checked first, and a bad one rejects the secret.
func (s *Server) buildSecrets(certs []tls.Certificate, v *validator) (*serverState, error) {
	ocsp, errs := s.staples(certs, s.c.paths())
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return s.build(certs, ocsp, v), nil
}

// build makes the crypto/tls config of certs (ocsp[i] the parsed staple
// of certs[i]) and v.
func (s *Server) build(certs []tls.Certificate, ocsp []*ocspResponse, v *validator) *serverState {
	c := s.c
	st := &serverState{sel: newCertSelector(certs, ocsp, c.params, s.fullScan, s.policy)}
	cfg := &tls.Config{
		MinVersion:             c.params.min,
		MaxVersion:             c.params.max,
		CipherSuites:           c.params.ciphers,
		CurvePreferences:       c.params.curves,
		NextProtos:             c.alpn,
		GetCertificate:         st.sel.getCertificateRecording,
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
		if val.acceptUntrusted {
			cfg.VerifyConnection = val.verifyPresence
			st.soft = &val
		}
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
	st, err := s.buildSecrets(certs, v)
	if err != nil {
		return nil, err
	}
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
	tc, _, err := s.HandshakeServed(c, deadline, st)
	return tc, err
}

// HandshakeServed is Handshake that also returns the leaf certificate the
// server presented (nil when unknown), for x-forwarded-client-cert's By.
func (s *Server) HandshakeServed(c net.Conn, deadline time.Time, st *Stats) (*tls.Conn, *x509.Certificate, error) {
	state := s.state.Load()
	if state == nil {
		if st.SecretsNotReady != nil {
			st.SecretsNotReady.Inc()
		}
		return nil, nil, ErrSecretsNotReady
	}
	tc := tls.Server(c, state.config)
	if !deadline.IsZero() {
		_ = c.SetDeadline(deadline)
	}
	// The context carries st to certificate selection (ssl.ocsp_staple_*)
	// and the slot where selection records the certificate it chose.
	// servedCert is itself the context (one allocation per handshake).
	served := &servedCert{Context: st.handshakeContext()}
	err := tc.HandshakeContext(served)
	if err != nil {
		var ne net.Error
		if !(errors.As(err, &ne) && ne.Timeout()) {
			st.countFailure(err)
		}
		return nil, nil, err
	}
	if !deadline.IsZero() {
		_ = c.SetDeadline(time.Time{})
	}
	cs := tc.ConnectionState()
	if state.soft != nil {
		if err := state.soft.softFailure(&cs, ""); err != nil {
			st.countVerify(err)
		}
	}
	st.countHandshake(&cs)
	return tc, served.leaf, nil
}
