package tlsx

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/stats"
)

func TestClientHandshake(t *testing.T) {
	p := newPKI(t)
	other := newCert(t, certOpts{cn: "other ca", isCA: true})
	caYAML := fmt.Sprintf("%q", p.ca.certPEM)
	tests := []struct {
		name        string
		yaml        string
		defaultALPN []string
		// server side
		serverALPN []string
		clientAuth bool
		wantErr    string
		wantSNI    string
		wantALPN   string
		wantStat   string
	}{
		// Envoy: without a validation_context the server is not verified.
		{name: "insecure without validation_context", yaml: "sni: example.com\n", wantSNI: "example.com", wantStat: "handshake"},
		{name: "trusted CA and SAN", yaml: "common_tls_context: { validation_context: { trusted_ca: { inline_string: " + caYAML +
			" }, match_typed_subject_alt_names: [ { san_type: DNS, matcher: { exact: example.com } } ] } }\n", wantStat: "handshake"},
		{name: "untrusted server", yaml: "common_tls_context: { validation_context: { trusted_ca: { inline_string: " + fmt.Sprintf("%q", other.certPEM) + " } } }\n",
			wantErr: "does not verify against trusted_ca", wantStat: "fail_verify_error"},
		{name: "SAN mismatch", yaml: "common_tls_context: { validation_context: { trusted_ca: { inline_string: " + caYAML +
			" }, match_typed_subject_alt_names: [ { san_type: DNS, matcher: { exact: api.other.com } } ] } }\n", wantErr: "subject alternative names", wantStat: "fail_verify_san"},
		{name: "default ALPN from the cluster protocol", yaml: "{}\n", defaultALPN: []string{"h2"}, serverALPN: []string{"h2", "http/1.1"}, wantALPN: "h2"},
		{name: "alpn_protocols win over the default", yaml: "common_tls_context: { alpn_protocols: [http/1.1] }\n", defaultALPN: []string{"h2"},
			serverALPN: []string{"h2", "http/1.1"}, wantALPN: "http/1.1"},
		{name: "client certificate for mTLS", yaml: "common_tls_context: { tls_certificates: [ { certificate_chain: { inline_string: " + fmt.Sprintf("%q", p.client.certPEM) +
			" }, private_key: { inline_string: " + fmt.Sprintf("%q", p.client.keyPEM) + " } } ] }\n", clientAuth: true, wantStat: "handshake"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := BuildClient(parse(t, &tlsv3.UpstreamTlsContext{}, tc.yaml), "ctx", tc.defaultALPN, nil)
			if err != nil {
				t.Fatal(err)
			}
			srvCfg := &tls.Config{Certificates: []tls.Certificate{keyPair(t, p.server)}, NextProtos: tc.serverALPN}
			if tc.clientAuth {
				srvCfg.ClientAuth = tls.RequireAnyClientCert
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			seen := make(chan tls.ConnectionState, 1)
			go func() {
				s := tls.Server(b, srvCfg)
				s.Handshake()
				seen <- s.ConnectionState()
				b.Close()
			}()
			store := stats.NewStore()
			st := NewStats(store.Scope("cluster.c."))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, err := cl.Handshake(ctx, a, st)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			a.Close()
			ss := <-seen
			if tc.wantErr == "" {
				if ss.ServerName != tc.wantSNI {
					t.Errorf("server saw SNI %q, want %q", ss.ServerName, tc.wantSNI)
				}
				if got := conn.ConnectionState().NegotiatedProtocol; got != tc.wantALPN {
					t.Errorf("ALPN = %q, want %q", got, tc.wantALPN)
				}
				if tc.clientAuth && len(ss.PeerCertificates) != 1 {
					t.Errorf("server got %d client certificates, want 1", len(ss.PeerCertificates))
				}
			}
			if tc.wantStat != "" {
				if got := store.Counter("cluster.c.ssl." + tc.wantStat).Value(); got != 1 {
					t.Errorf("ssl.%s = %d, want 1", tc.wantStat, got)
				}
			}
		})
	}
}
