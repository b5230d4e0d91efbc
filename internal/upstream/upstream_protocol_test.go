package upstream

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const tlsSocketYAML = `
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext}
`

const quicSocketYAML = `
  transport_socket:
    name: envoy.transport_sockets.quic
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicUpstreamTransport
      upstream_tls_context: {}
`

// protocolCluster is cluster "a" with HttpProtocolOptions fields opts
// (indented 6) and socket.
func protocolCluster(opts, socket string) string {
	return `
- name: a
  typed_extension_protocol_options:
    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
      "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
` + opts + socket
}

func TestParseProtocolSelection(t *testing.T) {
	const opts = `static_resources.clusters[0].typed_extension_protocol_options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]`
	tests := []struct {
		name      string
		yaml      string
		want      HTTPProtocol
		wantALPN  []string
		wantErrs  []string
		wantHTTP2 bool // http2_protocol_options reached the cluster
	}{
		{
			name:     "auto_config over TLS",
			yaml:     protocolCluster("      auto_config: {}\n", tlsSocketYAML),
			want:     Auto,
			wantALPN: []string{"h2", "http/1.1"},
		},
		{
			// Both protocols' options apply, each to its own connections.
			name:      "auto_config with both protocols' options",
			yaml:      protocolCluster("      auto_config: { http_protocol_options: {}, http2_protocol_options: { max_concurrent_streams: 10 } }\n", tlsSocketYAML),
			want:      Auto,
			wantALPN:  []string{"h2", "http/1.1"},
			wantHTTP2: true,
		},
		{
			// Envoy: "ALPN configured for cluster ... which has a non-ALPN
			// transport socket".
			name:     "auto_config without TLS",
			yaml:     protocolCluster("      auto_config: {}\n", ""),
			want:     Auto,
			wantALPN: []string{"h2", "http/1.1"},
			wantErrs: []string{"static_resources.clusters[0].transport_socket: ALPN configured for cluster a which has a non-ALPN transport socket"},
		},
		{
			name: "auto_config with HTTP/3 and the alternate protocols cache",
			yaml: protocolCluster("      auto_config: { http3_protocol_options: {}, alternate_protocols_cache_options: { name: c } }\n", tlsSocketYAML),
			want: Auto, wantALPN: []string{"h2", "http/1.1"},
			wantErrs: []string{
				opts + ".auto_config.http3_protocol_options: HTTP/3 in auto_config is not supported by herald yet",
				opts + ".auto_config.alternate_protocols_cache_options: the alternate protocols cache is not supported by herald yet",
			},
		},
		{
			name:     "explicit HTTP/3 over QUIC",
			yaml:     protocolCluster("      explicit_http_config: { http3_protocol_options: { quic_protocol_options: { initial_stream_window_size: 65536, idle_network_timeout: 30s } } }\n", quicSocketYAML),
			want:     HTTP3,
			wantALPN: []string{"h3"},
		},
		{
			name:     "explicit HTTP/3 over TLS",
			yaml:     protocolCluster("      explicit_http_config: { http3_protocol_options: {} }\n", tlsSocketYAML),
			want:     HTTP3,
			wantALPN: []string{"h3"},
			wantErrs: []string{"static_resources.clusters[0].transport_socket: HTTP3 requires a QuicUpstreamTransport transport socket"},
		},
		{
			name:     "explicit HTTP/3 with unsupported options",
			yaml:     protocolCluster("      explicit_http_config: { http3_protocol_options: { allow_extended_connect: true, quic_protocol_options: { connection_options: AKDU } } }\n", quicSocketYAML),
			want:     HTTP3,
			wantALPN: []string{"h3"},
			wantErrs: []string{
				opts + ".explicit_http_config.http3_protocol_options.allow_extended_connect: not supported by herald yet",
				opts + ".explicit_http_config.http3_protocol_options.quic_protocol_options.connection_options: not supported by herald yet",
			},
		},
		{
			name:     "explicit HTTP/2 keeps h2",
			yaml:     protocolCluster("      explicit_http_config: { http2_protocol_options: {} }\n", tlsSocketYAML),
			want:     HTTP2,
			wantALPN: []string{"h2"},
			// http2 options given explicitly.
			wantHTTP2: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := parseClusters(t, tc.yaml)[0]
			o, errs := parseHTTPOptions(c, prefix(0))
			if o.protocol != tc.want {
				t.Errorf("protocol = %v, want %v", o.protocol, tc.want)
			}
			if diff := cmp.Diff(tc.wantALPN, o.defaultALPN()); diff != "" {
				t.Errorf("defaultALPN (-want +got):\n%s", diff)
			}
			if got := o.http2 != nil; got != tc.wantHTTP2 {
				t.Errorf("http2 options set = %v, want %v", got, tc.wantHTTP2)
			}
			if len(errs) != len(tc.wantErrs) {
				t.Fatalf("got %d errors %v, want %d %q", len(errs), errs, len(tc.wantErrs), tc.wantErrs)
			}
			for i, want := range tc.wantErrs {
				if got := errs[i].Error(); !strings.Contains(got, want) {
					t.Errorf("error %d = %q, want it to contain %q", i, got, want)
				}
			}
		})
	}
}

// TestNegotiatedProtocol runs real TLS handshakes: h2 only when the server
// picked it; http/1.1 or no ALPN at all mean HTTP/1.1 (Envoy's mixed pool).
func TestNegotiatedProtocol(t *testing.T) {
	cert := selfSigned(t)
	tests := []struct {
		name       string
		serverALPN []string
		want       HTTPProtocol
	}{
		{name: "server picks h2", serverALPN: []string{"h2", "http/1.1"}, want: HTTP2},
		{name: "server speaks only http/1.1", serverALPN: []string{"http/1.1"}, want: HTTP1},
		{name: "server without ALPN", serverALPN: nil, want: HTTP1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc, sc := net.Pipe()
			defer cc.Close()
			defer sc.Close()
			srv := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: tc.serverALPN})
			done := make(chan error, 1)
			go func() { done <- srv.Handshake() }()
			cli := tls.Client(cc, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
			if err := cli.Handshake(); err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			// As Dial returns it: wrapped for stats.
			if got := NegotiatedProtocol(&upstreamConn{Conn: cli}); got != tc.want {
				t.Errorf("NegotiatedProtocol = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("plaintext", func(t *testing.T) {
		cc, sc := net.Pipe()
		defer cc.Close()
		defer sc.Close()
		if got := NegotiatedProtocol(cc); got != HTTP1 {
			t.Errorf("NegotiatedProtocol = %v, want HTTP/1.1", got)
		}
	})
}

func selfSigned(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "upstream"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"upstream"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
