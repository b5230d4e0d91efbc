package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptrace"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestHCMMaxRequestsPerConnection: with max_requests_per_connection: 2 the
// second response on a keep-alive connection carries connection: close and
// herald closes the connection after it, so a client's third request goes
// out on a new connection (Envoy's ConnectionManagerImpl::newStream).
func TestHCMMaxRequestsPerConnection(t *testing.T) {
	t.Parallel()
	backend := testutil.HTTPBackend(t, httpHandler("ok"))
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{
		name:     "web",
		hcmExtra: "          common_http_protocol_options: { max_requests_per_connection: 2 }\n",
		vhosts:   catchAllVhost("backend"),
	})}, staticCluster("backend", backend)))
	addr := h.ListenerAddr("web")

	// Raw: the exchange on one connection.
	c, r := dialHTTP(t, addr)
	for i := 1; i <= 2; i++ {
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		resp, body := readResponse(t, r, "GET")
		if resp.StatusCode != 200 || body != "ok" {
			t.Fatalf("request %d = %d %q, want 200 ok", i, resp.StatusCode, body)
		}
		if got, want := resp.Close, i == 2; got != want {
			t.Errorf("request %d: connection: close = %v, want %v (%v)", i, got, want, resp.Header)
		}
	}
	waitClosed(t, c, r, 5*time.Second)
	waitStat(t, h, "http.ingress_http.downstream_cx_max_requests_reached", 1)

	// A keep-alive client: requests 1 and 2 share a connection, the
	// third needs a new one.
	client := newClient()
	var reused []bool
	for i := 1; i <= 3; i++ {
		var got bool
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) { got = info.Reused }}
		req, err := nethttp.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", "http://"+addr+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d = %d, want 200", i, resp.StatusCode)
		}
		reused = append(reused, got)
	}
	if want := []bool{false, true, false}; fmt.Sprint(reused) != fmt.Sprint(want) {
		t.Errorf("connection reused per request = %v, want %v", reused, want)
	}
	waitStat(t, h, "http.ingress_http.downstream_cx_max_requests_reached", 2)
}

// TestHCMMaxStreamDuration: the connection manager's max_stream_duration
// ends a stream on a slow backend as Envoy's onStreamMaxDurationReached
// (504 "downstream duration timeout" once the request is complete), and a
// route's explicit max_stream_duration: 0s disables it for that route.
func TestHCMMaxStreamDuration(t *testing.T) {
	t.Parallel()
	slow := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(time.Second):
			io.WriteString(w, "slow")
		}
	}))
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/unlimited" }
                route: { cluster: slow, max_stream_duration: { max_stream_duration: 0s } }
              - match: { prefix: "/" }
                route: { cluster: slow }`
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{
		name:     "web",
		hcmExtra: "          common_http_protocol_options: { max_stream_duration: 0.2s }\n",
		vhosts:   vhosts,
	})}, staticCluster("slow", slow)))
	c := newClient()
	start := time.Now()
	code, _, body := get(t, c, "http://"+h.ListenerAddr("web")+"/", "")
	if code != 504 || body != "downstream duration timeout" {
		t.Errorf("GET / = %d %q, want 504 \"downstream duration timeout\"", code, body)
	}
	if took := time.Since(start); took >= time.Second {
		t.Errorf("GET / took %v: the backend answered before max_stream_duration (0.2 s) fired", took)
	}
	waitStat(t, h, "http.ingress_http.downstream_rq_max_duration_reached", 1)

	code, _, body = get(t, c, "http://"+h.ListenerAddr("web")+"/unlimited", "")
	if code != 200 || body != "slow" {
		t.Errorf("GET /unlimited = %d %q, want 200 slow (the route's 0s disables the limit)", code, body)
	}
	if got := h.Stat("http.ingress_http.downstream_rq_max_duration_reached"); got != 1 {
		t.Errorf("downstream_rq_max_duration_reached = %d after /unlimited, want 1", got)
	}
}

// TestHCMHeadersWithUnderscores: REJECT_REQUEST answers HTTP/1.1 with 400
// and resets HTTP/2 streams; DROP_HEADER removes the header before the
// backend sees it. Counted in Envoy's codec stats (http1., http2.).
func TestHCMHeadersWithUnderscores(t *testing.T) {
	t.Parallel()
	// The backend answers with which of the test's headers it received.
	echo := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		var names []string
		for k := range r.Header {
			switch lk := strings.ToLower(k); lk {
			case "x_foo", "x-bar", "other_one":
				names = append(names, lk)
			}
		}
		sort.Strings(names)
		io.WriteString(w, strings.Join(names, ","))
	}))
	h := testutil.Start(t, bootstrap([]string{
		extraHCMListener(hcmSpec{
			name:     "reject",
			hcmExtra: "          common_http_protocol_options: { headers_with_underscores_action: REJECT_REQUEST }\n",
			vhosts:   catchAllVhost("echo"),
		}),
		extraHCMListener(hcmSpec{
			name:     "drop",
			hcmExtra: "          common_http_protocol_options: { headers_with_underscores_action: DROP_HEADER }\n",
			vhosts:   catchAllVhost("echo"),
		}),
	}, staticCluster("echo", echo)))

	// REJECT_REQUEST, HTTP/1.1: 400 Bad Request, then the connection closes.
	c, r := dialHTTP(t, h.ListenerAddr("reject"))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: example.com\r\nx_foo: 1\r\nx-bar: 2\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, body := readResponse(t, r, "GET")
	if resp.StatusCode != 400 || body != "Bad Request" || !resp.Close {
		t.Errorf("REJECT_REQUEST HTTP/1.1 = %d %q (close %v), want 400 \"Bad Request\" and connection: close", resp.StatusCode, body, resp.Close)
	}
	waitClosed(t, c, r, 5*time.Second)
	waitStat(t, h, "http1.requests_rejected_with_underscores_in_headers", 1)
	waitStat(t, h, "http.ingress_http.downstream_cx_protocol_error", 1)

	// A request without underscores passes.
	code, _, body := get(t, newClient(), "http://"+h.ListenerAddr("reject")+"/", "")
	if code != 200 {
		t.Errorf("REJECT_REQUEST without underscores = %d %q, want 200", code, body)
	}

	// REJECT_REQUEST, HTTP/2 (h2c): the stream is reset.
	h2 := &nethttp.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, a string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, a)
		},
	}}
	req, err := nethttp.NewRequest("GET", "http://"+h.ListenerAddr("reject")+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header["x_foo"] = []string{"1"}
	if resp, err := h2.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("REJECT_REQUEST HTTP/2 = %d, want a stream reset", resp.StatusCode)
	} else if !strings.Contains(err.Error(), "stream error") {
		t.Errorf("REJECT_REQUEST HTTP/2: %v, want a stream error (RST_STREAM)", err)
	}
	waitStat(t, h, "http2.requests_rejected_with_underscores_in_headers", 1)

	// DROP_HEADER, HTTP/1.1: the backend sees x-bar only.
	c, r = dialHTTP(t, h.ListenerAddr("drop"))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: example.com\r\nx_foo: 1\r\nx-bar: 2\r\nother_one: 3\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, body = readResponse(t, r, "GET")
	if resp.StatusCode != 200 || body != "x-bar" {
		t.Errorf("DROP_HEADER = %d, backend saw %q; want 200 and x-bar only", resp.StatusCode, body)
	}
	waitStat(t, h, "http1.dropped_headers_with_underscores", 2)
}
