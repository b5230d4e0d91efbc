package quic

import (
	"crypto/tls"
	"strings"
	"testing"

	quicv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/quic/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/tlsx"
	"github.com/herald-proxy/herald/internal/upstream"
)

func TestBuildUpstream(t *testing.T) {
	tests := []struct {
		name        string
		cfg         *quicv3.QuicUpstreamTransport
		defaultALPN []string
		wantErr     string
	}{
		// alpn_protocols of the TLS context do not apply: QUIC offers h3.
		{name: "HTTP/3 cluster", defaultALPN: []string{"h3"}, cfg: &quicv3.QuicUpstreamTransport{
			UpstreamTlsContext: &tlsv3.UpstreamTlsContext{Sni: "backend.example", CommonTlsContext: &tlsv3.CommonTlsContext{AlpnProtocols: []string{"h2"}}},
		}},
		{name: "cluster not speaking HTTP/3", defaultALPN: []string{"h2"},
			cfg:     &quicv3.QuicUpstreamTransport{UpstreamTlsContext: &tlsv3.UpstreamTlsContext{}},
			wantErr: "ts: envoy.transport_sockets.quic needs a cluster with explicit_http_config.http3_protocol_options"},
		{name: "no TLS context", defaultALPN: []string{"h3"}, cfg: &quicv3.QuicUpstreamTransport{},
			wantErr: "ts.upstream_tls_context: upstream_tls_context is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := buildUpstream(tc.cfg, transportsocket.BuildContext{Path: "ts", DefaultALPN: tc.defaultALPN})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			qt, ok := u.(upstream.QUICTransport)
			if !ok {
				t.Fatalf("%T does not implement upstream.QUICTransport", u)
			}
			for _, o := range []*tlsx.HandshakeOptions{nil, {ServerName: "auto.example"}} {
				cfg, err := qt.QUICTLSConfig(o)
				if err != nil {
					t.Fatal(err)
				}
				wantSNI := "backend.example"
				if o != nil {
					wantSNI = o.ServerName
				}
				if cfg.MinVersion != tls.VersionTLS13 || cfg.MaxVersion != tls.VersionTLS13 || cfg.ServerName != wantSNI {
					t.Errorf("config: versions %x-%x, sni %q; want TLS 1.3 only, sni %q", cfg.MinVersion, cfg.MaxVersion, cfg.ServerName, wantSNI)
				}
				if diff := cmp.Diff([]string{"h3"}, cfg.NextProtos); diff != "" {
					t.Errorf("NextProtos (-want +got):\n%s", diff)
				}
			}
			if _, err := u.Handshake(t.Context(), nil); err == nil {
				t.Error("Handshake on a TCP connection succeeded, want an error")
			}
		})
	}
}
