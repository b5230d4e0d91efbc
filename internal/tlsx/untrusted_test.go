package tlsx

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/stats"
)

// allVerifyStats are the counters each ACCEPT_UNTRUSTED case asserts, so a
// stat counted where it should not be fails the case.
var allVerifyStats = []string{"handshake", "connection_error", "no_certificate", "fail_verify_no_cert", "fail_verify_error", "fail_verify_san", "fail_verify_cert_hash"}

// TestAcceptUntrustedServer: downstream trust_chain_verification
// ACCEPT_UNTRUSTED accepts what the validation context refuses but counts
// the failure (Envoy's DefaultCertValidator: doVerifyCertChain returns
// Successful after counting fail_verify_error, and stops there;
// verifyCertAndUpdateStatus counts SAN and hash failures and returns
// "allow_untrusted_certificate_ || success"). require_client_certificate
// is still enforced.
func TestAcceptUntrustedServer(t *testing.T) {
	p := newPKI(t)
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)
	caYAML := fmt.Sprintf("%q", p.ca.certPEM)
	hash := sha256.Sum256(p.client.cert.Raw)
	vc := func(fields string) string {
		return "  validation_context: { trust_chain_verification: ACCEPT_UNTRUSTED" + fields + " }\n"
	}
	trusted := ", trusted_ca: { inline_string: " + caYAML + " }"
	sanOther := ", match_typed_subject_alt_names: [ { san_type: DNS, matcher: { exact: other.example.com } } ]"
	withCert := func(c *testCert) *tls.Config {
		return &tls.Config{RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{keyPair(t, c)}}
	}
	tests := []struct {
		name      string
		extra     string
		client    *tls.Config
		wantErr   bool
		wantStats map[string]uint64
	}{
		{name: "trusted certificate", extra: vc(trusted) + "require_client_certificate: true\n", client: withCert(p.client),
			wantStats: map[string]uint64{"handshake": 1}},
		{name: "untrusted chain accepted and counted", extra: vc(trusted) + "require_client_certificate: true\n", client: withCert(p.otherClient),
			wantStats: map[string]uint64{"handshake": 1, "fail_verify_error": 1}},
		{name: "SAN mismatch accepted and counted", extra: vc(trusted + sanOther), client: withCert(p.client),
			wantStats: map[string]uint64{"handshake": 1, "fail_verify_san": 1}},
		// The chain failure ends the checks: the SAN is not looked at.
		{name: "untrusted chain and SAN mismatch count the chain only", extra: vc(trusted + sanOther), client: withCert(p.otherClient),
			wantStats: map[string]uint64{"handshake": 1, "fail_verify_error": 1}},
		{name: "hash mismatch accepted and counted", extra: vc(", verify_certificate_hash: [" + hex.EncodeToString(hash[:len(hash)-1]) + "00]"), client: withCert(p.client),
			wantStats: map[string]uint64{"handshake": 1, "fail_verify_cert_hash": 1}},
		{name: "require_client_certificate still enforced", extra: vc(trusted) + "require_client_certificate: true\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com"}, wantErr: true,
			wantStats: map[string]uint64{"connection_error": 1, "fail_verify_no_cert": 1}},
		// SAN matchers and pins no longer require a certificate
		// (SSL_VERIFY_PEER without SSL_VERIFY_FAIL_IF_NO_PEER_CERT).
		{name: "SAN matcher without a certificate", extra: vc(trusted + sanOther),
			client: &tls.Config{RootCAs: roots, ServerName: "example.com"}, wantStats: map[string]uint64{"handshake": 1, "no_certificate": 1}},
		// Envoy asks for a certificate "even if we have nothing to verify
		// against".
		{name: "certificate requested without trusted_ca", extra: vc(""), client: withCert(p.otherClient),
			wantStats: map[string]uint64{"handshake": 1, "no_certificate": 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, serverYAML(p, tc.extra)), "ctx", nil)
			if err != nil {
				t.Fatal(err)
			}
			store := stats.NewStore()
			st := NewStats(store.Scope("listener.x."))
			_, err = handshake(t, srv, st, tc.client)
			if (err != nil) != tc.wantErr {
				t.Fatalf("server handshake error = %v, want error: %v", err, tc.wantErr)
			}
			for _, name := range allVerifyStats {
				if got, want := store.Counter("listener.x.ssl."+name).Value(), tc.wantStats[name]; got != want {
					t.Errorf("ssl.%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

// TestAcceptUntrustedClient: the upstream side of ACCEPT_UNTRUSTED, with
// the per-connection SAN check of auto_san_validation counted the same way.
func TestAcceptUntrustedClient(t *testing.T) {
	p := newPKI(t)
	other := newCert(t, certOpts{cn: "other ca", isCA: true})
	vc := func(ca *testCert, fields string) string {
		return fmt.Sprintf("common_tls_context: { validation_context: { trust_chain_verification: ACCEPT_UNTRUSTED, trusted_ca: { inline_string: %q }%s } }\n", ca.certPEM, fields)
	}
	tests := []struct {
		name       string
		yaml       string
		verifyName string
		wantStats  map[string]uint64
	}{
		{name: "trusted server", yaml: vc(p.ca, ""), wantStats: map[string]uint64{"handshake": 1}},
		{name: "untrusted server accepted and counted", yaml: vc(other, ""), wantStats: map[string]uint64{"handshake": 1, "fail_verify_error": 1}},
		{name: "SAN mismatch accepted and counted", yaml: vc(p.ca, ", match_typed_subject_alt_names: [ { san_type: DNS, matcher: { exact: api.other.com } } ]"),
			wantStats: map[string]uint64{"handshake": 1, "fail_verify_san": 1}},
		{name: "auto_san_validation mismatch accepted and counted", yaml: vc(p.ca, ""), verifyName: "api.other.com",
			wantStats: map[string]uint64{"handshake": 1, "fail_verify_san": 1}},
		{name: "auto_san_validation match", yaml: vc(p.ca, ""), verifyName: "example.com", wantStats: map[string]uint64{"handshake": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := BuildClient(parse(t, &tlsv3.UpstreamTlsContext{}, tc.yaml), "ctx", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			go func() {
				s := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{keyPair(t, p.server)}})
				s.Handshake()
				b.Close()
			}()
			store := stats.NewStore()
			st := NewStats(store.Scope("cluster.c."))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tc.verifyName != "" {
				ctx = WithHandshakeOptions(ctx, &HandshakeOptions{VerifyName: tc.verifyName})
			}
			if _, err := cl.Handshake(ctx, a, st); err != nil {
				t.Fatalf("handshake: %v", err)
			}
			for _, name := range allVerifyStats {
				if got, want := store.Counter("cluster.c.ssl."+name).Value(), tc.wantStats[name]; got != want {
					t.Errorf("ssl.%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}
