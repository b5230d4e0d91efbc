package tlsx

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/secret"
	"github.com/herald-proxy/herald/internal/stats"
)

// Client is a built UpstreamTlsContext: the crypto/tls client config shared
// by every connection to the cluster's hosts. With SDS secrets the config
// is rebuilt when one changes and swapped in atomically (one load per
// handshake).
type Client struct {
	// Immutable after BuildClient:
	c    *common
	base *tls.Config // everything but the certificate and the validator
	// sessionKeys is max_session_keys: each built config gets its own
	// session cache, so no session outlives the certificate it used.
	sessionKeys int
	// alpnDefaulted: alpn_protocols is empty, the cluster's default ALPN
	// is offered (and a HandshakeOptions.ALPNFallback may replace it).
	alpnDefaulted bool

	// state is the current config; nil while SDS secrets are not ready.
	state atomic.Pointer[clientState]

	// updated are ssl_context_update_by_sds counters; updates counts the
	// SDS installs so far. Guarded by mu.
	mu      sync.Mutex
	updated []*stats.Counter
	updates uint64
}

// clientState is one built crypto/tls config. Immutable.
type clientState struct {
	config *tls.Config
	// soft is the ACCEPT_UNTRUSTED validator whose checks run after the
	// handshake, only to count their stats; nil otherwise.
	soft *validator
}

var upstreamFields = []string{"common_tls_context", "sni", "max_session_keys", "allow_renegotiation"}

// BuildClient builds an UpstreamTlsContext; path is the YAML path of the
// message. defaultALPN is offered when alpn_protocols is empty (Envoy's
// connection pools set "h2" or "http/1.1" as the ALPN fallback of their
// protocol); nil offers none. secrets resolves SDS references (nil
// refuses them).
//
// As Envoy: without a validation_context the server certificate is not
// verified; with one, its chain is checked against trusted_ca and its SANs
// against match_typed_subject_alt_names, never against sni. TLS 1.2 is the
// default maximum for clients (common.proto).
func BuildClient(uc *tlsv3.UpstreamTlsContext, path string, defaultALPN []string, secrets *secret.Manager) (*Client, error) {
	errs := configerr.CheckFields(uc, path, upstreamFields...)
	c, cerrs := buildCommon(uc.GetCommonTlsContext(), path+".common_tls_context", false, secrets)
	errs = append(errs, cerrs...)
	if len(c.certs)+len(c.certProviders) > 1 {
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
		ServerName:       uc.GetSni(),
		// Verification is the validator's (Envoy's semantics, not Go's
		// hostname check); without a validation_context there is none.
		InsecureSkipVerify: true,
	}
	// Envoy: max_session_keys "Defaults to 1, setting this to 0 disables
	// session resumption".
	keys := 1
	if m := uc.GetMaxSessionKeys(); m != nil {
		keys = int(m.GetValue())
	}
	if uc.GetAllowRenegotiation() {
		cfg.Renegotiation = tls.RenegotiateFreelyAsClient
	}
	cl := &Client{c: c, base: cfg, sessionKeys: keys, alpnDefaulted: len(c.alpn) == 0}
	if !c.dynamic() {
		cl.state.Store(cl.build(c.certs, c.v))
		return cl, nil
	}
	var initErr error
	secrets.Follow(c.providers(), secret.WeakWatcher(cl), func() {
		certs, v, ok, err := c.secretValues(nil, nil)
		switch {
		case err != nil:
			initErr = err
		case ok:
			cl.state.Store(cl.build(certs, v))
			cl.updates++
		}
	})
	if initErr != nil {
		return nil, initErr
	}
	return cl, nil
}

// build is base with the client certificate and the validator.
func (cl *Client) build(certs []tls.Certificate, v *validator) *clientState {
	cfg := cl.base.Clone()
	// Envoy's client contexts never use ocsp_staple.
	cfg.Certificates = make([]tls.Certificate, len(certs))
	for i := range certs {
		cfg.Certificates[i] = certs[i]
		cfg.Certificates[i].OCSPStaple = nil
	}
	if cl.sessionKeys > 0 {
		cfg.ClientSessionCache = tls.NewLRUClientSessionCache(cl.sessionKeys)
	}
	st := &clientState{config: cfg}
	switch {
	case v != nil && v.acceptUntrusted:
		// A server always sends its certificate: nothing to enforce.
		st.soft = v
	case v != nil:
		cfg.VerifyConnection = v.verify
	}
	return st
}

// PrepareSecret implements secret.Watcher.
func (cl *Client) PrepareSecret(p *secret.Provider, sec *tlsv3.Secret) (func(), error) {
	certs, v, ok, err := cl.c.secretValues(p, sec)
	if err != nil {
		return nil, err
	}
	if !ok {
		return func() {}, nil
	}
	st := cl.build(certs, v)
	return func() {
		cl.state.Store(st)
		cl.mu.Lock()
		cl.updates++
		for _, c := range cl.updated {
			c.Inc()
		}
		cl.mu.Unlock()
	}, nil
}

// Track counts the context's SDS installs, past and future, into st's
// client_ssl_socket_factory.ssl_context_update_by_sds.
func (cl *Client) Track(st *Stats) {
	if st == nil || st.ContextUpdateBySDS == nil {
		return
	}
	cl.mu.Lock()
	cl.updated = append(cl.updated, st.ContextUpdateBySDS)
	st.ContextUpdateBySDS.Add(cl.updates)
	cl.mu.Unlock()
}

// Config returns the client's current crypto/tls config (nil while SDS
// secrets are not ready); do not modify it.
func (cl *Client) Config() *tls.Config {
	if st := cl.state.Load(); st != nil {
		return st.config
	}
	return nil
}

// Handshake runs the client handshake on conn until ctx ends (the
// cluster's connect_timeout) and counts it into st (cluster.<name>.ssl.*;
// nil counts nothing). HandshakeOptions in ctx (WithHandshakeOptions)
// adjust the SNI and the SAN check of this connection.
func (cl *Client) Handshake(ctx context.Context, conn net.Conn, st *Stats) (*tls.Conn, error) {
	state := cl.state.Load()
	if state == nil {
		if st != nil && st.SecretsNotReady != nil {
			st.SecretsNotReady.Inc()
		}
		return nil, ErrSecretsNotReady
	}
	cfg := state.config
	var verifyName string
	if o, ok := ctx.Value(handshakeOptionsKey{}).(*HandshakeOptions); ok && o != nil {
		opts := *o
		if !cl.alpnDefaulted {
			opts.ALPNFallback = "" // alpn_protocols configured: kept as is
		}
		if state.soft != nil {
			// ACCEPT_UNTRUSTED: the SAN check only counts, after the
			// handshake.
			verifyName, opts.VerifyName = opts.VerifyName, ""
		}
		// withOptions copies the shared config: only when there is
		// something to change.
		if opts != (HandshakeOptions{}) {
			cfg = withOptions(cfg, &opts)
		}
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		if st != nil && ctx.Err() == nil {
			st.countFailure(err)
		}
		return nil, err
	}
	if st != nil {
		cs := tc.ConnectionState()
		if state.soft != nil {
			if err := state.soft.softFailure(&cs, verifyName); err != nil {
				st.countVerify(err)
			}
		}
		st.countHandshake(&cs)
	}
	return tc, nil
}
