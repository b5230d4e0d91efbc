package tlsx

import (
	"context"
	"crypto/tls"
	"net"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Client is a built UpstreamTlsContext: the crypto/tls client config shared
// by every connection to the cluster's hosts. Immutable.
type Client struct {
	config *tls.Config
}

var upstreamFields = []string{"common_tls_context", "sni", "max_session_keys", "allow_renegotiation"}

// BuildClient builds an UpstreamTlsContext; path is the YAML path of the
// message. defaultALPN is offered when alpn_protocols is empty (Envoy's
// connection pools set "h2" or "http/1.1" as the ALPN fallback of their
// protocol); nil offers none.
//
// As Envoy: without a validation_context the server certificate is not
// verified; with one, its chain is checked against trusted_ca and its SANs
// against match_typed_subject_alt_names, never against sni. TLS 1.2 is the
// default maximum for clients (common.proto).
func BuildClient(uc *tlsv3.UpstreamTlsContext, path string, defaultALPN []string) (*Client, error) {
	errs := configerr.CheckFields(uc, path, upstreamFields...)
	c, cerrs := buildCommon(uc.GetCommonTlsContext(), path+".common_tls_context", false)
	errs = append(errs, cerrs...)
	if len(c.certs) > 1 {
		errs = append(errs, configerr.At(path+".common_tls_context.tls_certificates", "a client TLS context takes at most one certificate"))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	alpn := c.alpn
	if len(alpn) == 0 {
		alpn = defaultALPN
	}
	cfg := &tls.Config{
		MinVersion:       c.params.min,
		MaxVersion:       c.params.max,
		CipherSuites:     c.params.ciphers,
		CurvePreferences: c.params.curves,
		NextProtos:       alpn,
		Certificates:     c.certs,
		ServerName:       uc.GetSni(),
		// Verification is the validator's (Envoy's semantics, not Go's
		// hostname check); without a validation_context there is none.
		InsecureSkipVerify: true,
	}
	if c.v != nil {
		cfg.VerifyConnection = c.v.verify
	}
	// Envoy: max_session_keys "Defaults to 1, setting this to 0 disables
	// session resumption".
	keys := 1
	if m := uc.GetMaxSessionKeys(); m != nil {
		keys = int(m.GetValue())
	}
	if keys > 0 {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(keys)
	}
	if uc.GetAllowRenegotiation() {
		cfg.Renegotiation = tls.RenegotiateFreelyAsClient
	}
	return &Client{config: cfg}, nil
}

// Config returns the client's crypto/tls config; do not modify it.
func (c *Client) Config() *tls.Config { return c.config }

// Handshake runs the client handshake on conn until ctx ends (the
// cluster's connect_timeout) and counts it into st (cluster.<name>.ssl.*;
// nil counts nothing).
func (c *Client) Handshake(ctx context.Context, conn net.Conn, st *Stats) (*tls.Conn, error) {
	tc := tls.Client(conn, c.config)
	if err := tc.HandshakeContext(ctx); err != nil {
		if st != nil && ctx.Err() == nil {
			st.countFailure(err)
		}
		return nil, err
	}
	if st != nil {
		cs := tc.ConnectionState()
		st.countHandshake(&cs)
	}
	return tc, nil
}
