package integration

import (
	"fmt"
	"io"
	nethttp "net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// hangingBackend never answers: each request waits until the proxy gives up
// on it (or the test ends).
func hangingBackend(t *testing.T) string {
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	return testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
}

// TestExtraStreamIdleTimeout: when stream_idle_timeout fires before the
// response starts, Envoy answers 408 with body "stream timeout" and counts
// http.<prefix>.downstream_rq_idle_timeout. The route timeout is 0 (off) so
// only the idle timer can fire.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto#envoy-v3-api-field-extensions-filters-network-http-connection-manager-v3-httpconnectionmanager-stream-idle-timeout
func TestExtraStreamIdleTimeout(t *testing.T) {
	t.Parallel()
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: hang, timeout: 0s }`
	l := extraHCMListener(hcmSpec{name: "l", hcmExtra: "          stream_idle_timeout: 0.3s\n", vhosts: vhosts})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("hang", hangingBackend(t))))
	start := time.Now()
	code, _, body := get(t, newClient(), "http://"+h.ListenerAddr("l")+"/", "")
	if code != 408 || body != "stream timeout" {
		t.Fatalf("got %d %q, want 408 %q", code, body, "stream timeout")
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("answered after %v, before the 0.3s stream idle timeout", el)
	}
	waitStat(t, h, "http.ingress_http.downstream_rq_idle_timeout", 1)
}

// TestExtraRequestTimeout: a client that sends headers and part of the body
// and then stalls gets 408 "request timeout" once request_timeout passes;
// http.<prefix>.downstream_rq_timeout counts it.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto#envoy-v3-api-field-extensions-filters-network-http-connection-manager-v3-httpconnectionmanager-request-timeout
func TestExtraRequestTimeout(t *testing.T) {
	t.Parallel()
	l := extraHCMListener(hcmSpec{name: "l", hcmExtra: "          request_timeout: 0.3s\n", vhosts: catchAllVhost("hang")})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("hang", hangingBackend(t))))
	c, r := dialHTTP(t, h.ListenerAddr("l"))
	start := time.Now()
	if _, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789"); err != nil {
		t.Fatal(err)
	}
	resp, body := readResponse(t, r, "POST")
	if resp.StatusCode != 408 || body != "request timeout" {
		t.Fatalf("got %d %q, want 408 %q", resp.StatusCode, body, "request timeout")
	}
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("answered after %v, before the 0.3s request timeout", el)
	}
	waitStat(t, h, "http.ingress_http.downstream_rq_timeout", 1)
}

// TestExtraConnectionIdleTimeout: common_http_protocol_options.idle_timeout
// closes a keep-alive connection with no active stream and counts
// http.<prefix>.downstream_cx_idle_timeout.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#envoy-v3-api-field-config-core-v3-httpprotocoloptions-idle-timeout
func TestExtraConnectionIdleTimeout(t *testing.T) {
	t.Parallel()
	backend := testutil.NamedBackend(t, "b")
	l := extraHCMListener(hcmSpec{name: "l", hcmExtra: "          common_http_protocol_options: { idle_timeout: 0.3s }\n", vhosts: catchAllVhost("b")})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("b", backend)))
	c, r := dialHTTP(t, h.ListenerAddr("l"))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, body := readResponse(t, r, "GET")
	if resp.StatusCode != 200 || body != "b" || resp.Close {
		t.Fatalf("got %d %q (close %v), want 200 b on a kept-alive connection", resp.StatusCode, body, resp.Close)
	}
	elapsed := waitClosed(t, c, r, 5*time.Second)
	if elapsed < 200*time.Millisecond {
		t.Errorf("closed after %v, before the 0.3s idle timeout", elapsed)
	}
	waitStat(t, h, "http.ingress_http.downstream_cx_idle_timeout", 1)
}

// TestExtraMaxRequestHeadersKB: request headers over max_request_headers_kb
// are answered with 431; under the limit they pass.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto#envoy-v3-api-field-extensions-filters-network-http-connection-manager-v3-httpconnectionmanager-max-request-headers-kb
func TestExtraMaxRequestHeadersKB(t *testing.T) {
	t.Parallel()
	backend := testutil.NamedBackend(t, "b")
	l := extraHCMListener(hcmSpec{name: "l", hcmExtra: "          max_request_headers_kb: 4\n", vhosts: catchAllVhost("b")})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("b", backend)))
	url := "http://" + h.ListenerAddr("l") + "/"
	tests := []struct {
		name     string
		size     int
		wantCode int
	}{
		{name: "under the limit", size: 3 << 10, wantCode: 200},
		{name: "over the limit", size: 5 << 10, wantCode: 431},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := nethttp.NewRequest("GET", url, nil)
			req.Header.Set("x-big", strings.Repeat("a", tc.size))
			resp, err := newClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("got %d, want %d", resp.StatusCode, tc.wantCode)
			}
		})
	}
}

// TestExtraForwardingHeaders checks x-forwarded-for, x-request-id and the
// server header with use_remote_address false.
// https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers
func TestExtraForwardingHeaders(t *testing.T) {
	t.Parallel()
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-seen-xff", strings.Join(r.Header.Values("x-forwarded-for"), "|"))
		w.Header().Set("x-seen-request-id", r.Header.Get("x-request-id"))
		w.Header().Set("x-seen-external-address", r.Header.Get("x-envoy-external-address"))
		w.Header().Set("server", "backend-server")
		io.WriteString(w, "ok")
	}))
	logPath := filepath.Join(t.TempDir(), "access.log")
	hcmExtra := `          use_remote_address: false
          xff_num_trusted_hops: 1
          server_name: herald-test-server
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: ` + logPath + `
              log_format:
                text_format_source:
                  inline_string: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT% %REQ(:PATH)%\n"
`
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { path: "/" }
                route: { cluster: b }`
	l := extraHCMListener(hcmSpec{name: "l", hcmExtra: hcmExtra, vhosts: vhosts})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("b", backend)), "--file-flush-interval-msec", "50")
	base := "http://" + h.ListenerAddr("l")
	req, _ := nethttp.NewRequest("GET", base+"/", nil)
	req.Header.Set("x-forwarded-for", "203.0.113.7, 198.51.100.1")
	req.Header.Set("x-request-id", "client-chosen-request-id")
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	checks := []struct {
		name   string
		header string
		want   string
	}{
		// use_remote_address false: Envoy does not append the peer address.
		{name: "xff passed unchanged", header: "x-seen-xff", want: "203.0.113.7, 198.51.100.1"},
		// The request is not an edge request, so its x-request-id is kept.
		{name: "x-request-id preserved", header: "x-seen-request-id", want: "client-chosen-request-id"},
		// x-envoy-external-address is only set with use_remote_address true.
		{name: "no external address", header: "x-seen-external-address", want: ""},
		// server_header_transformation OVERWRITE (default) with server_name.
		{name: "server name overrides the backend's", header: "server", want: "herald-test-server"},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if got := resp.Header.Get(tc.header); got != tc.want {
				t.Errorf("%s = %q, want %q", tc.header, got, tc.want)
			}
		})
	}
	// A local reply (no route) carries the configured server name too.
	code, hdr, _ := get(t, newClient(), base+"/no-route", "")
	if code != 404 || hdr.Get("server") != "herald-test-server" {
		t.Errorf("local reply: %d server %q, want 404 herald-test-server", code, hdr.Get("server"))
	}
	// xff_num_trusted_hops 1: the trusted client address is the second
	// address from the right of x-forwarded-for.
	// The two entries may land in either order: a stream logs when it
	// ends, which can be after the client saw its response.
	lines := waitLines(t, logPath, 2)
	want := "203.0.113.7 127.0.0.1 /"
	if lines[0] != want && lines[1] != want {
		t.Errorf("access log %q, want a line %q", lines, want)
	}
}

// TestExtraHTTP1HostAndVersion checks Envoy's HTTP/1 request-line rules: an
// HTTP/1.1 request without Host is 400; HTTP/1.0 is 426 Upgrade Required
// unless http_protocol_options.accept_http_10 is set, in which case it is
// served (with default_host_for_http_10 filling in a missing Host) and
// answered with an HTTP/1.0 status line.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#envoy-v3-api-field-config-core-v3-http1protocoloptions-accept-http-10
func TestExtraHTTP1HostAndVersion(t *testing.T) {
	t.Parallel()
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-seen-host", r.Host)
		io.WriteString(w, "ok")
	}))
	strict := extraHCMListener(hcmSpec{name: "strict", vhosts: catchAllVhost("b")})
	http10 := extraHCMListener(hcmSpec{name: "http10", hcmExtra: "          http_protocol_options: { accept_http_10: true, default_host_for_http_10: legacy.example }\n", vhosts: catchAllVhost("b")})
	h := testutil.Start(t, bootstrap([]string{strict, http10}, staticCluster("b", backend)))
	tests := []struct {
		name       string
		listener   string
		req        string
		wantStatus string
		wantBody   string
	}{
		{name: "HTTP/1.1 without Host is 400", listener: "strict", req: "GET / HTTP/1.1\r\n\r\n", wantStatus: "HTTP/1.1 400 "},
		{name: "HTTP/1.0 is 426 by default", listener: "strict", req: "GET / HTTP/1.0\r\nHost: a\r\n\r\n", wantStatus: "HTTP/1.1 426 "},
		{name: "HTTP/1.1 with Host is served", listener: "strict", req: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", wantStatus: "HTTP/1.1 200 ", wantBody: "ok"},
		{name: "HTTP/1.0 accepted when configured", listener: "http10", req: "GET / HTTP/1.0\r\nHost: a\r\n\r\n", wantStatus: "HTTP/1.0 200 ", wantBody: "ok"},
		{name: "HTTP/1.0 without Host gets the default host", listener: "http10", req: "GET / HTTP/1.0\r\n\r\n", wantStatus: "HTTP/1.0 200 ", wantBody: "ok"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := rawRequest(t, h.ListenerAddr(tc.listener), tc.req)
			if !strings.HasPrefix(resp, tc.wantStatus) {
				t.Fatalf("response %q, want status line %q", resp, tc.wantStatus)
			}
			if tc.wantBody != "" && !strings.HasSuffix(resp, "\r\n\r\n"+tc.wantBody) {
				t.Fatalf("response %q, want body %q", resp, tc.wantBody)
			}
		})
	}
	// The default host reached the backend.
	resp := rawRequest(t, h.ListenerAddr("http10"), "GET / HTTP/1.0\r\n\r\n")
	if !strings.Contains(strings.ToLower(resp), "x-seen-host: legacy.example\r\n") {
		t.Errorf("backend did not see default_host_for_http_10:\n%s", resp)
	}
}

// TestExtraStreamIdleTimeoutNotOnActiveStream guards the other side of
// stream_idle_timeout: activity resets the timer, so a slow but steady
// response is not cut. The backend paces its chunks on purpose.
func TestExtraStreamIdleTimeoutNotOnActiveStream(t *testing.T) {
	t.Parallel()
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		fl := w.(nethttp.Flusher)
		// Six chunks 100 ms apart: 0.6 s in all, each gap under the 0.3 s
		// idle timeout.
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < 6; i++ {
			fmt.Fprintf(w, "%d", i)
			fl.Flush()
			<-tick.C
		}
	}))
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: slow, timeout: 0s }`
	l := extraHCMListener(hcmSpec{name: "l", hcmExtra: "          stream_idle_timeout: 0.3s\n", vhosts: vhosts})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("slow", backend)))
	code, _, body := get(t, newClient(), "http://"+h.ListenerAddr("l")+"/", "")
	if code != 200 || body != "012345" {
		t.Fatalf("got %d %q, want 200 012345", code, body)
	}
	if v := h.Stat("http.ingress_http.downstream_rq_idle_timeout"); v > 0 {
		t.Errorf("downstream_rq_idle_timeout = %d, want 0", v)
	}
}
