package tlsx

import (
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Server is a built DownstreamTlsContext: the crypto/tls server config
// shared by every connection of its filter chain. Immutable.
type Server struct {
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
//
// Defaults are Envoy's: TLS 1.2 to 1.3, Envoy's server cipher list and
// curves (X25519, P-256), session tickets on (Go rotates the ticket key
// itself, as BoringSSL does without session_ticket_keys). herald has no
// server-side session cache, so disable_stateful_session_resumption is
// accepted and changes nothing.
func BuildServer(dc *tlsv3.DownstreamTlsContext, path string) (*Server, error) {
	errs := configerr.RejectUnlisted(dc, path, downstreamIssues, downstreamFields...)
	cpath := path + ".common_tls_context"
	c, cerrs := buildCommon(dc.GetCommonTlsContext(), cpath, true)
	errs = append(errs, cerrs...)
	if len(c.certs) == 0 && len(cerrs) == 0 {
		// Envoy: "No TLS certificates found for server context".
		errs = append(errs, configerr.At(cpath+".tls_certificates", "a server TLS context needs at least one certificate"))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	s := &Server{certs: c.certs}
	cfg := &tls.Config{
		MinVersion:             c.params.min,
		MaxVersion:             c.params.max,
		CipherSuites:           c.params.ciphers,
		CurvePreferences:       c.params.curves,
		NextProtos:             c.alpn,
		GetCertificate:         s.getCertificate,
		SessionTicketsDisabled: dc.GetDisableStatelessSessionResumption(),
	}
	required := dc.GetRequireClientCertificate().GetValue()
	v := c.v
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
		s.noALPN = cfg.Clone()
		s.noALPN.NextProtos = nil
		cfg.GetConfigForClient = s.configForClient
	}
	s.config = cfg
	return s, nil
}

// configForClient drops ALPN for a client whose offered protocols do not
// overlap the configured ones.
func (s *Server) configForClient(hi *tls.ClientHelloInfo) (*tls.Config, error) {
	if len(hi.SupportedProtos) == 0 {
		return nil, nil
	}
	for _, p := range hi.SupportedProtos {
		if slices.Contains(s.config.NextProtos, p) {
			return nil, nil
		}
	}
	return s.noALPN, nil
}

// getCertificate picks the certificate as Envoy does with several
// tls_certificates: one valid for the SNI whose key type the client
// supports, else the first whose key type it supports, else the first.
func (s *Server) getCertificate(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(s.certs) == 1 {
		return &s.certs[0], nil
	}
	for i := range s.certs {
		if hi.SupportsCertificate(&s.certs[i]) == nil {
			return &s.certs[i], nil
		}
	}
	if hi.ServerName != "" {
		noSNI := *hi
		noSNI.ServerName = ""
		for i := range s.certs {
			if noSNI.SupportsCertificate(&s.certs[i]) == nil {
				return &s.certs[i], nil
			}
		}
	}
	return &s.certs[0], nil
}

// Config returns the server's crypto/tls config; do not modify it.
func (s *Server) Config() *tls.Config { return s.config }

// Handshake runs the server handshake on c, bounded by deadline (zero: no
// bound), and counts it into st. On success it returns the TLS connection
// with the deadline cleared; on failure the caller closes c.
func (s *Server) Handshake(c net.Conn, deadline time.Time, st *Stats) (*tls.Conn, error) {
	tc := tls.Server(c, s.config)
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
