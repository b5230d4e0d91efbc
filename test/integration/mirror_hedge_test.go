package integration

import (
	"fmt"
	"io"
	nethttp "net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// Request mirroring and route priority through the real binary
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-msg-config-route-v3-routeaction-requestmirrorpolicy,
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/circuit_breaking).

// mirrorSeen is one request a shadow backend received.
type mirrorSeen struct {
	method, host, path, body, header string
}

// shadowBackend records every request and answers 418 (a response nobody
// must see).
func shadowBackend(t *testing.T) (addr string, seen <-chan mirrorSeen) {
	t.Helper()
	ch := make(chan mirrorSeen, 16)
	addr = testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- mirrorSeen{method: r.Method, host: r.Host, path: r.URL.Path, body: string(b), header: r.Header.Get("x-test")}
		w.WriteHeader(418)
		io.WriteString(w, "shadow answer")
	}))
	return addr, ch
}

// mirrorListener renders listener "l" with one virtual host whose routes
// are given (list items indented 14 spaces).
func mirrorListener(routes string) string {
	return extraHCMListener(hcmSpec{
		name: "l",
		vhosts: `            - name: vh
              domains: ["*"]
              routes:
` + routes,
	})
}

// waitMirror returns the next mirrored request or fails after 10 s.
func waitMirror(t *testing.T, seen <-chan mirrorSeen) mirrorSeen {
	t.Helper()
	select {
	case m := <-seen:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no mirrored request reached the shadow backend")
		return mirrorSeen{}
	}
}

// TestMirrorRequest: the client gets the primary's answer while a copy of
// the request (method, headers, body) reaches the shadow cluster with
// "-shadow" in its host; the variants of the policy behave as Envoy
// documents.
func TestMirrorRequest(t *testing.T) {
	t.Parallel()
	primary := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "primary %s %s", r.Host, b)
	}))
	shadow, seen := shadowBackend(t)
	cfg := bootstrap([]string{mirrorListener(`              - match: { prefix: "/keep" }
                route:
                  cluster: primary
                  request_mirror_policies: [{ cluster: shadow, disable_shadow_host_suffix_append: true }]
              - match: { prefix: "/literal" }
                route:
                  cluster: primary
                  request_mirror_policies: [{ cluster: shadow, host_rewrite_literal: mirror.local }]
              - match: { prefix: "/header" }
                route:
                  cluster: primary
                  request_mirror_policies: [{ cluster_header: x-mirror-to }]
              - match: { prefix: "/never" }
                route:
                  cluster: primary
                  request_mirror_policies:
                  - cluster: shadow
                    runtime_fraction: { default_value: { numerator: 0 }, runtime_key: mirror.never }
              - match: { prefix: "/" }
                route:
                  cluster: primary
                  request_mirror_policies: [{ cluster: shadow, trace_sampled: true }]
`)}, staticCluster("primary", primary), staticCluster("shadow", shadow))
	h := testutil.Start(t, cfg)
	base := "http://" + h.ListenerAddr("l")
	c := newClient()

	// The fraction-0 route first: if it mirrored, its copy would be seen
	// before or with the later ones and fail the path checks below.
	tests := []struct {
		name     string
		method   string
		path     string
		host     string
		body     string
		hdr      map[string]string
		mirrored bool
		want     mirrorSeen
	}{
		{name: "never", method: "GET", path: "/never", host: "svc.local"},
		{name: "no cluster header", method: "GET", path: "/header/none", host: "svc.local"},
		{name: "post with body and port", method: "POST", path: "/a", host: "svc.local:8080", body: "payload",
			hdr: map[string]string{"x-test": "v"}, mirrored: true,
			want: mirrorSeen{method: "POST", host: "svc.local-shadow:8080", path: "/a", body: "payload", header: "v"}},
		{name: "get without port", method: "GET", path: "/b", host: "svc.local", mirrored: true,
			want: mirrorSeen{method: "GET", host: "svc.local-shadow", path: "/b"}},
		{name: "suffix disabled", method: "PUT", path: "/keep", host: "svc.local", body: "x", mirrored: true,
			want: mirrorSeen{method: "PUT", host: "svc.local", path: "/keep", body: "x"}},
		{name: "host literal", method: "GET", path: "/literal", host: "svc.local", mirrored: true,
			want: mirrorSeen{method: "GET", host: "mirror.local", path: "/literal"}},
		{name: "cluster header", method: "GET", path: "/header/yes", host: "svc.local",
			hdr: map[string]string{"x-mirror-to": "shadow"}, mirrored: true,
			want: mirrorSeen{method: "GET", host: "svc.local-shadow", path: "/header/yes"}},
	}
	mirrored := 0
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := nethttp.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Host = tc.host
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := "primary " + tc.host + " " + tc.body; resp.StatusCode != 200 || string(b) != want {
				t.Fatalf("client got %d %q, want 200 %q (the primary's answer)", resp.StatusCode, b, want)
			}
			if !tc.mirrored {
				return
			}
			mirrored++
			if got := waitMirror(t, seen); got != tc.want {
				t.Errorf("shadow got %+v, want %+v", got, tc.want)
			}
		})
	}
	// Mirrors count under the shadow cluster's stats, never the primary's.
	waitStat(t, h, "cluster.shadow.upstream_rq_total", int64(mirrored))
	waitStat(t, h, "cluster.shadow.upstream_rq_418", int64(mirrored))
	waitStat(t, h, "cluster.primary.upstream_rq_total", int64(len(tests)))
	select {
	case m := <-seen:
		t.Errorf("unexpected mirror %+v", m)
	default:
	}
}

// TestMirrorShadowFailureIsInvisible: a shadow cluster that refuses
// connections, or one that never answers, changes nothing in the main
// response; the slow shadow's circuit breakers bound the mirrors in
// flight (one request open, the rest overflow at once).
func TestMirrorShadowFailureIsInvisible(t *testing.T) {
	t.Parallel()
	primary := testutil.HTTPBackend(t, httpHandler("primary"))
	release := make(chan struct{})
	slow := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release) })
	cfg := bootstrap([]string{mirrorListener(`              - match: { prefix: "/dead" }
                route:
                  cluster: primary
                  request_mirror_policies: [{ cluster: dead }]
              - match: { prefix: "/slow" }
                route:
                  cluster: primary
                  request_mirror_policies: [{ cluster: slow }]
`)}, staticCluster("primary", primary), staticCluster("dead", testutil.ClosedPort(t)),
		staticCluster("slow", slow)+`    circuit_breakers:
      thresholds: [{ max_requests: 1 }]
`)
	h := testutil.Start(t, cfg)
	base := "http://" + h.ListenerAddr("l")
	c := newClient()
	check := func(path string) {
		t.Helper()
		resp, err := c.Post(base+path, "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "primary" {
			t.Fatalf("POST %s = %d %q, want 200 primary", path, resp.StatusCode, b)
		}
	}

	check("/dead")
	waitStat(t, h, "cluster.dead.upstream_cx_connect_fail", 1)
	check("/dead")
	waitStat(t, h, "cluster.dead.upstream_cx_connect_fail", 2)

	check("/slow")
	// The first mirror holds the slow cluster's only request...
	waitStat(t, h, "cluster.slow.circuit_breakers.default.rq_open", 1)
	for range 4 {
		check("/slow")
	}
	// ...so the next four overflow instead of piling up.
	waitStat(t, h, "cluster.slow.upstream_rq_pending_overflow", 4)
	waitStat(t, h, "cluster.primary.upstream_rq_200", 7)
	waitStat(t, h, "cluster.primary.upstream_rq_active", 0)
}

// TestMirrorAbandonedOverBufferLimit: a body larger than the buffer limit
// is not mirrored (retry_or_shadow_abandoned) and still reaches the
// primary in full.
func TestMirrorAbandonedOverBufferLimit(t *testing.T) {
	t.Parallel()
	primary := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %d", len(b))
	}))
	shadow, seen := shadowBackend(t)
	cfg := bootstrap([]string{extraHCMListener(hcmSpec{
		name: "l",
		vhosts: `            - name: vh
              domains: ["*"]
              per_request_buffer_limit_bytes: 4
              routes:
              - match: { prefix: "/" }
                route:
                  cluster: primary
                  request_mirror_policies: [{ cluster: shadow }]
`,
	})}, staticCluster("primary", primary), staticCluster("shadow", shadow))
	h := testutil.Start(t, cfg)
	resp, err := newClient().Post("http://"+h.ListenerAddr("l")+"/big", "text/plain", strings.NewReader("0123456789"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "got 10" {
		t.Fatalf("response = %d %q, want 200 got 10", resp.StatusCode, b)
	}
	waitStat(t, h, "cluster.primary.retry_or_shadow_abandoned", 1)
	// A small body on the same route is mirrored.
	resp, err = newClient().Post("http://"+h.ListenerAddr("l")+"/small", "text/plain", strings.NewReader("abc"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := waitMirror(t, seen); got.path != "/small" || got.body != "abc" {
		t.Errorf("shadow got %+v, want /small with body abc", got)
	}
}

// TestRoutePriorityHigh: a priority: HIGH route uses the cluster's HIGH
// circuit breakers: with the DEFAULT max_requests exhausted HIGH requests
// still pass, and the other way round; the gauges are per priority.
func TestRoutePriorityHigh(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	arrived := make(chan string, 4)
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if strings.HasSuffix(r.URL.Path, "/block") {
			arrived <- r.URL.Path
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	cfg := bootstrap([]string{mirrorListener(`              - match: { prefix: "/high" }
                route: { cluster: b, priority: HIGH }
              - match: { prefix: "/" }
                route: { cluster: b }
`)}, staticCluster("b", backend)+`    circuit_breakers:
      thresholds:
      - { priority: DEFAULT, max_requests: 1 }
      - { priority: HIGH, max_requests: 1 }
`)
	h := testutil.Start(t, cfg)
	base := "http://" + h.ListenerAddr("l")
	held := make(chan string, 2)
	hold := func(path string) {
		go func() {
			resp, err := newClient().Get(base + path)
			if err != nil {
				held <- err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			held <- fmt.Sprintf("%d %s", resp.StatusCode, b)
		}()
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s never reached the backend", path)
		}
	}
	expect := func(path string, want int) {
		t.Helper()
		code, hdr, body := get(t, newClient(), base+path, "")
		if code != want {
			t.Fatalf("GET %s = %d %q, want %d", path, code, body, want)
		}
		if want == 503 && hdr.Get("x-envoy-overloaded") != "true" {
			t.Errorf("GET %s: x-envoy-overloaded = %q, want true", path, hdr.Get("x-envoy-overloaded"))
		}
	}

	hold("/block")
	waitStat(t, h, "cluster.b.circuit_breakers.default.rq_open", 1)
	expect("/x", 503)      // DEFAULT exhausted
	expect("/high/x", 200) // HIGH is not
	waitStat(t, h, "cluster.b.circuit_breakers.high.rq_open", 0)

	hold("/high/block")
	waitStat(t, h, "cluster.b.circuit_breakers.high.rq_open", 1)
	expect("/high/y", 503)
	waitStat(t, h, "cluster.b.upstream_rq_pending_overflow", 2)

	unblock()
	for range 2 {
		if got := <-held; !strings.HasPrefix(got, "200 ok /") {
			t.Errorf("held request = %q, want 200", got)
		}
	}
	waitStat(t, h, "cluster.b.circuit_breakers.default.rq_open", 0)
	waitStat(t, h, "cluster.b.circuit_breakers.high.rq_open", 0)
	expect("/x", 200)
	expect("/high/x", 200)
}

// TestMirrorTrailers: request trailers reach the mirror with the body, as
// Envoy's maybeDoShadowing copies them; two policies send two mirrors. The
// downstream is HTTP/1.1 with enable_trailers, the upstreams HTTP/2.
func TestMirrorTrailers(t *testing.T) {
	t.Parallel()
	primary := testutil.H2CBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "primary %s %s", b, r.Trailer.Get("x-tr"))
	}))
	seen := make(chan string, 4)
	shadow := testutil.H2CBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- fmt.Sprintf("%s %s %s", r.Host, b, r.Trailer.Get("x-tr"))
	}))
	h2 := `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
`
	cfg := bootstrap([]string{extraHCMListener(hcmSpec{
		name:     "l",
		hcmExtra: "          http_protocol_options: { enable_trailers: true }\n",
		vhosts: `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route:
                  cluster: primary
                  request_mirror_policies:
                  - cluster: shadow
                  - cluster: shadow
                    host_rewrite_literal: second.local
`,
	})}, staticCluster("primary", primary)+h2, staticCluster("shadow", shadow)+h2)
	h := testutil.Start(t, cfg)
	pr, pw := io.Pipe()
	req, err := nethttp.NewRequest("POST", "http://"+h.ListenerAddr("l")+"/t", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "svc.local"
	req.Trailer = nethttp.Header{"X-Tr": nil}
	go func() {
		io.WriteString(pw, "chunk")
		req.Trailer.Set("x-tr", "end")
		pw.Close()
	}()
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "primary chunk end" {
		t.Fatalf("response = %d %q, want 200 %q", resp.StatusCode, b, "primary chunk end")
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case m := <-seen:
			got[m] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("mirrors seen %v, want 2", got)
		}
	}
	for _, want := range []string{"svc.local-shadow chunk end", "second.local chunk end"} {
		if !got[want] {
			t.Errorf("mirrors seen %v, missing %q", got, want)
		}
	}
	waitStat(t, h, "cluster.shadow.upstream_rq_total", 2)
}

// TestRoutePriorityHighConnections: with the DEFAULT max_connections used
// up by a held request, a HIGH request still dials (herald counts the
// host's shared connections against the HIGH max_connections), while a
// DEFAULT one waits for the connection (upstream_cx_overflow).
func TestRoutePriorityHighConnections(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	arrived := make(chan struct{}, 4)
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path == "/block" {
			arrived <- struct{}{}
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}))
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	t.Cleanup(unblock)
	cfg := bootstrap([]string{mirrorListener(`              - match: { prefix: "/high" }
                route: { cluster: b, priority: HIGH }
              - match: { prefix: "/" }
                route: { cluster: b }
`)}, staticCluster("b", backend)+`    circuit_breakers:
      thresholds:
      - { priority: DEFAULT, max_connections: 1 }
      - { priority: HIGH, max_connections: 2 }
`)
	h := testutil.Start(t, cfg)
	base := "http://" + h.ListenerAddr("l")
	results := make(chan string, 2)
	fetch := func(path string) {
		resp, err := newClient().Get(base + path)
		if err != nil {
			results <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		results <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}
	go fetch("/block")
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("/block never reached the backend")
	}
	waitStat(t, h, "cluster.b.circuit_breakers.default.cx_open", 1)
	go fetch("/waits")
	waitStat(t, h, "cluster.b.upstream_cx_overflow", 1)
	waitStat(t, h, "cluster.b.upstream_rq_pending_active", 1)
	if code, _, body := get(t, newClient(), base+"/high/x", ""); code != 200 || body != "ok /high/x" {
		t.Fatalf("HIGH request = %d %q, want 200 while DEFAULT connections are used up", code, body)
	}
	unblock()
	got := map[string]bool{<-results: true, <-results: true}
	for _, want := range []string{"200 ok /block", "200 ok /waits"} {
		if !got[want] {
			t.Errorf("DEFAULT requests = %v, missing %q", got, want)
		}
	}
}

// TestHedgeOnPerTryTimeout: with hedge_on_per_try_timeout, an attempt that
// passes its per-try timeout stays open while a second one starts; the
// first response wins and the other attempt is reset. Envoy counts the
// hedge as a retry and no upstream_rq_per_try_timeout; without hedging the
// first attempt is reset at its per-try timeout.
func TestHedgeOnPerTryTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		hedge  bool
		h2     bool   // HTTP/2 upstream
		header string // x-envoy-hedge-on-per-try-timeout
		// winner is which call answers: 1 answers once call 2 arrived,
		// 2 answers at once (call 1 then waits until reset).
		winner    int64
		wantBody  string
		wantReset int64 // the call that must see its request reset
		wantStats map[string]int64
		wantTO    string // x-envoy-expected-rq-timeout-ms of call 1
	}{
		{name: "hedge wins", hedge: true, winner: 2, wantBody: "call 2", wantReset: 1, wantTO: "5000",
			wantStats: map[string]int64{
				"cluster.b.upstream_rq_retry": 1, "cluster.b.upstream_rq_retry_success": 1,
				"cluster.b.upstream_rq_per_try_timeout": 0, "cluster.b.upstream_rq_total": 2,
				"cluster.b.upstream_rq_200": 1,
			}},
		{name: "first attempt wins after the hedge started", hedge: true, winner: 1, wantBody: "call 1", wantReset: 2, wantTO: "5000",
			wantStats: map[string]int64{
				"cluster.b.upstream_rq_retry": 1, "cluster.b.upstream_rq_retry_success": 0,
				"cluster.b.upstream_rq_per_try_timeout": 0, "cluster.b.upstream_rq_total": 2,
			}},
		{name: "hedge wins over HTTP/2", hedge: true, h2: true, winner: 2, wantBody: "call 2", wantReset: 1, wantTO: "5000",
			wantStats: map[string]int64{"cluster.b.upstream_rq_retry": 1, "cluster.b.upstream_rq_per_try_timeout": 0}},
		{name: "first attempt wins over HTTP/2", hedge: true, h2: true, winner: 1, wantBody: "call 1", wantReset: 2, wantTO: "5000",
			wantStats: map[string]int64{"cluster.b.upstream_rq_retry": 1}},
		{name: "header turns hedging on", header: "true", winner: 2, wantBody: "call 2", wantReset: 1, wantTO: "5000",
			wantStats: map[string]int64{"cluster.b.upstream_rq_retry": 1, "cluster.b.upstream_rq_per_try_timeout": 0}},
		{name: "without hedging the first attempt is reset", winner: 2, wantBody: "call 2", wantReset: 1, wantTO: "300",
			wantStats: map[string]int64{"cluster.b.upstream_rq_retry": 1, "cluster.b.upstream_rq_per_try_timeout": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			calls := int64(0)
			second := make(chan struct{})
			reset := make(chan int64, 2)
			expected := make(chan string, 2)
			backendOf, clusterExtra := testutil.HTTPBackend, ""
			if tc.h2 {
				backendOf = testutil.H2CBackend
				clusterExtra = `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
`
			}
			backend := backendOf(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
				io.ReadAll(r.Body)
				mu.Lock()
				calls++
				n := calls
				mu.Unlock()
				expected <- r.Header.Get("x-envoy-expected-rq-timeout-ms")
				if n == 2 {
					close(second)
				}
				if n == tc.winner {
					if n == 1 {
						select {
						case <-second:
						case <-r.Context().Done():
							reset <- n
							return
						}
					}
					io.WriteString(w, fmt.Sprintf("call %d", n))
					return
				}
				<-r.Context().Done()
				reset <- n
			}))
			hedge := ""
			if tc.hedge {
				hedge = "                  hedge_policy: { hedge_on_per_try_timeout: true }\n"
			}
			cfg := bootstrap([]string{mirrorListener(`              - match: { prefix: "/" }
                route:
                  cluster: b
                  timeout: 5s
` + hedge + `                  retry_policy:
                    retry_on: 5xx
                    num_retries: 1
                    per_try_timeout: 0.3s
                    retry_back_off: { base_interval: 0.001s }
`)}, staticCluster("b", backend)+clusterExtra)
			h := testutil.Start(t, cfg)
			req, err := nethttp.NewRequest("POST", "http://"+h.ListenerAddr("l")+"/", strings.NewReader("body"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.header != "" {
				req.Header.Set("x-envoy-hedge-on-per-try-timeout", tc.header)
			}
			resp, err := newClient().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != tc.wantBody {
				t.Fatalf("response = %d %q, want 200 %q", resp.StatusCode, b, tc.wantBody)
			}
			if got := <-expected; got != tc.wantTO {
				t.Errorf("x-envoy-expected-rq-timeout-ms of the first attempt = %q, want %q", got, tc.wantTO)
			}
			select {
			case n := <-reset:
				if n != tc.wantReset {
					t.Errorf("call %d was reset, want call %d", n, tc.wantReset)
				}
			case <-time.After(10 * time.Second):
				t.Errorf("call %d was never reset", tc.wantReset)
			}
			for name, want := range tc.wantStats {
				waitStat(t, h, name, want)
			}
			waitStat(t, h, "cluster.b.upstream_rq_active", 0)
			waitStat(t, h, "cluster.b.circuit_breakers.default.rq_open", 0)
		})
	}
}

// TestHedgeOutcomes: the route timeout ends every hedged attempt (504,
// upstream_rq_timeout); a retriable 503 from the hedged-out first attempt
// is discarded while the hedge is in flight, and the hedge's answer wins.
func TestHedgeOutcomes(t *testing.T) {
	t.Parallel()
	firstAnswered := make(chan struct{})
	tests := []struct {
		name      string
		timeout   string
		handle    func(n int64, second <-chan struct{}, w nethttp.ResponseWriter, r *nethttp.Request)
		wantCode  int
		wantBody  string
		wantStats map[string]int64
	}{
		{
			name:    "route timeout",
			timeout: "1s",
			handle: func(n int64, _ <-chan struct{}, _ nethttp.ResponseWriter, r *nethttp.Request) {
				<-r.Context().Done()
			},
			wantCode: 504, wantBody: "upstream request timeout",
			wantStats: map[string]int64{"cluster.b.upstream_rq_timeout": 2, "cluster.b.upstream_rq_retry": 1},
		},
		{
			name:    "retriable answer of the first attempt is discarded",
			timeout: "5s",
			handle: func(n int64, second <-chan struct{}, w nethttp.ResponseWriter, r *nethttp.Request) {
				if n == 1 {
					<-second
					w.WriteHeader(503)
					io.WriteString(w, "busy")
					w.(nethttp.Flusher).Flush()
					// herald resets the attempt when it discards the 503.
					<-r.Context().Done()
					close(firstAnswered)
					return
				}
				// The hedge answers once the first attempt was discarded.
				<-firstAnswered
				io.WriteString(w, "hedge")
			},
			wantCode: 200, wantBody: "hedge",
			wantStats: map[string]int64{"cluster.b.upstream_rq_retry": 1, "cluster.b.upstream_rq_200": 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var mu sync.Mutex
			calls := int64(0)
			second := make(chan struct{})
			backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
				mu.Lock()
				calls++
				n := calls
				mu.Unlock()
				if n == 2 {
					close(second)
				}
				tc.handle(n, second, w, r)
			}))
			cfg := bootstrap([]string{mirrorListener(`              - match: { prefix: "/" }
                route:
                  cluster: b
                  timeout: ` + tc.timeout + `
                  hedge_policy: { hedge_on_per_try_timeout: true }
                  retry_policy:
                    retry_on: 5xx
                    num_retries: 1
                    per_try_timeout: 0.2s
                    retry_back_off: { base_interval: 0.001s }
`)}, staticCluster("b", backend))
			h := testutil.Start(t, cfg)
			code, _, body := get(t, newClient(), "http://"+h.ListenerAddr("l")+"/", "")
			if code != tc.wantCode || body != tc.wantBody {
				t.Fatalf("response = %d %q, want %d %q", code, body, tc.wantCode, tc.wantBody)
			}
			for name, want := range tc.wantStats {
				waitStat(t, h, name, want)
			}
			waitStat(t, h, "cluster.b.upstream_rq_active", 0)
			waitStat(t, h, "cluster.b.circuit_breakers.default.rq_open", 0)
		})
	}
}
