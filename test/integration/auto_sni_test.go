package integration

import (
	"crypto/tls"
	"fmt"
	"io"
	nethttp "net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil"
)

// sniBackend is an HTTPS server answering "sni=<SNI it saw> proto=<proto>".
func sniBackend(t *testing.T, cert tls.Certificate, h2 bool) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		fmt.Fprintf(w, "sni=%s proto=%s", r.TLS.ServerName, r.Proto)
	}))
	srv.EnableHTTP2 = h2
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

// autoSNICluster is a TLS cluster trusting the test CA with
// upstream_http_protocol_options opts.
func autoSNICluster(f *tlsFiles, name, backend, protocol, opts string) string {
	return staticCluster(name, backend) + fmt.Sprintf(`    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        upstream_http_protocol_options: %s
        explicit_http_config: { %s: {} }
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: default.example.com
        common_tls_context:
          validation_context:
            trusted_ca: { filename: %q }
`, opts, protocol, f.ca)
}

// TestAutoSNI: with auto_sni the upstream SNI is the request's host (port
// dropped, after host rewrites, or override_auto_sni_header), and a
// connection made for one SNI never serves another.
func TestAutoSNI(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	type req struct{ host, header, want string }
	tests := []struct {
		name     string
		h2       bool
		protocol string
		opts     string
		vhosts   string
		reqs     []req
	}{
		{name: "HTTP/1.1 per host", protocol: "http_protocol_options", opts: "{ auto_sni: true }", reqs: []req{
			{host: "a.example.com", want: "sni=a.example.com proto=HTTP/1.1"},
			{host: "b.example.com:8443", want: "sni=b.example.com proto=HTTP/1.1"},
			{host: "a.example.com", want: "sni=a.example.com proto=HTTP/1.1"},
			{host: "b.example.com", want: "sni=b.example.com proto=HTTP/1.1"},
			// An IP address is not sent as SNI: the context's sni stays.
			{host: "127.0.0.1:80", want: "sni=default.example.com proto=HTTP/1.1"},
		}},
		{name: "HTTP/2 per host", h2: true, protocol: "http2_protocol_options", opts: "{ auto_sni: true }", reqs: []req{
			{host: "a.example.com", want: "sni=a.example.com proto=HTTP/2.0"},
			{host: "b.example.com", want: "sni=b.example.com proto=HTTP/2.0"},
			{host: "a.example.com", want: "sni=a.example.com proto=HTTP/2.0"},
		}},
		{name: "override header", protocol: "http_protocol_options", opts: "{ auto_sni: true, override_auto_sni_header: X-Upstream-SNI }", reqs: []req{
			{host: "a.example.com", header: "c.example.com", want: "sni=c.example.com proto=HTTP/1.1"},
			{host: "a.example.com", want: "sni=a.example.com proto=HTTP/1.1"},
		}},
		{name: "after host rewrite", protocol: "http_protocol_options", opts: "{ auto_sni: true }",
			vhosts: `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: c, host_rewrite_literal: "rewritten.example.com:443" }`,
			reqs: []req{{host: "a.example.com", want: "sni=rewritten.example.com proto=HTTP/1.1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			backend := sniBackend(t, f.server, tc.h2)
			vhosts := tc.vhosts
			if vhosts == "" {
				vhosts = catchAllVhost("c")
			}
			h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "in", vhosts: vhosts})},
				autoSNICluster(f, "c", backend, tc.protocol, tc.opts)))
			c := newClient()
			for i, r := range tc.reqs {
				req, err := nethttp.NewRequest("GET", "http://"+h.ListenerAddr("in")+"/", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Host = r.host
				if r.header != "" {
					req.Header.Set("X-Upstream-SNI", r.header)
				}
				code, body := doAutoSNI(t, c, req)
				if code != 200 || body != r.want {
					t.Fatalf("request %d (Host %s): got %d %q, want 200 %q", i, r.host, code, body, r.want)
				}
			}
		})
	}
}

// TestAutoSANValidation: with auto_san_validation the server certificate
// must name the request's host, on top of the context's trusted_ca.
func TestAutoSANValidation(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	backend := sniBackend(t, f.leaf(t, "a backend", "a.example.com"), false)
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "in", vhosts: catchAllVhost("c")})},
		autoSNICluster(f, "c", backend, "http_protocol_options", "{ auto_sni: true, auto_san_validation: true }")))
	c := newClient()
	code, _, body := get(t, c, "http://"+h.ListenerAddr("in")+"/", "a.example.com")
	if code != 200 || body != "sni=a.example.com proto=HTTP/1.1" {
		t.Fatalf("matching host: got %d %q, want 200", code, body)
	}
	code, _, body = get(t, c, "http://"+h.ListenerAddr("in")+"/", "b.example.com")
	if code != 503 || !strings.Contains(body, "transport failure reason") || !strings.Contains(body, "subject alternative names") {
		t.Fatalf("mismatching host: got %d %q, want 503 with the TLS failure reason", code, body)
	}
	waitStat(t, h, "cluster.c.ssl.fail_verify_san", 1)
	// The failure did not poison a's pool.
	code, _, _ = get(t, c, "http://"+h.ListenerAddr("in")+"/", "a.example.com")
	if code != 200 {
		t.Fatalf("matching host after a failure: got %d, want 200", code)
	}
}

// doAutoSNI sends req and returns the status and body.
func doAutoSNI(t *testing.T, c *nethttp.Client, req *nethttp.Request) (int, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}
