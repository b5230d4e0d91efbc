package connmgr

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// optStream is a downstream request without a body (or with one that never
// ends, when open); it records the response.
type optStream struct {
	headers *hhttp.Headers
	proto   string
	open    bool // the request body is still arriving: ReadBody blocks until ctx ends
	ctx     context.Context

	mu     sync.Mutex
	resp   *hhttp.Headers
	body   []byte
	ended  bool
	writes int
}

func newOptStream(proto string, extra ...string) *optStream {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "GET")
	h.Add(hhttp.Path, "/")
	h.Add(hhttp.Authority, "example.com")
	h.Add(hhttp.Scheme, "http")
	for i := 0; i+1 < len(extra); i += 2 {
		h.Add(extra[i], extra[i+1])
	}
	return &optStream{headers: h, proto: proto, ctx: context.Background()}
}

func (s *optStream) RequestHeaders() *hhttp.Headers  { return s.headers }
func (s *optStream) RequestEndStream() bool          { return !s.open }
func (s *optStream) RequestTrailers() *hhttp.Headers { return nil }
func (s *optStream) Protocol() string                { return s.proto }
func (s *optStream) Context() context.Context        { return s.ctx }
func (s *optStream) ReadBody([]byte) (int, error) {
	if s.open {
		<-s.ctx.Done()
		return 0, s.ctx.Err()
	}
	return 0, io.EOF
}
func (s *optStream) WriteHeaders(h *hhttp.Headers, end bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resp = h.Clone()
	s.ended = end
	s.writes++
	return nil
}
func (s *optStream) WriteData(p []byte, end bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.body = append(s.body, p...)
	s.ended = end
	return nil
}
func (s *optStream) WriteTrailers(*hhttp.Headers) error { s.ended = true; return nil }

// status is the response's :status, "" when none was written.
func (s *optStream) status() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.resp == nil {
		return ""
	}
	return s.resp.Get(hhttp.Status)
}

// deadlineConn stands for an HTTP/1.1 connection: the watchdog's past read
// deadline, which wakes a blocked body read, runs onDeadline.
type deadlineConn struct {
	net.Conn
	onDeadline func()
}

func (c deadlineConn) SetReadDeadline(time.Time) error { c.onDeadline(); return nil }

// answerFilter records the request headers it sees (pseudo-headers and
// x-forwarded-proto left out) and answers 200 after
// wait (at once when 0), unless the stream's context ends first.
type answerFilter struct {
	cb   httpfilter.Callbacks
	wait time.Duration
	seen *[]string
}

func (f *answerFilter) DecodeHeaders(h *hhttp.Headers, end bool) httpfilter.Status {
	if f.seen != nil {
		for _, fl := range h.Fields {
			if fl.Name[0] != ':' && fl.Name != "x-forwarded-proto" {
				*f.seen = append(*f.seen, fl.Name)
			}
		}
	}
	if f.wait > 0 {
		select {
		case <-f.cb.Context().Done():
			return httpfilter.Stop
		case <-time.After(f.wait):
		}
	}
	resp := &hhttp.Headers{}
	resp.Add(hhttp.Status, "200")
	f.cb.EncodeHeaders(resp, true)
	return httpfilter.Stop
}
func (f *answerFilter) DecodeData([]byte, bool) httpfilter.Status       { return httpfilter.Stop }
func (f *answerFilter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Stop }

// infoLog keeps what the access log saw of the last stream.
type infoLog struct {
	details string
	flags   bool // DownstreamProtocolError
	n       int
}

func (l *infoLog) Log(info *streaminfo.Info) {
	l.details = info.ResponseCodeDetails
	l.flags = info.HasFlag(streaminfo.DownstreamProtocolError)
	l.n++
}

// optConfig is a prepared Config whose only filter is an answerFilter.
func optConfig(t *testing.T, store *stats.Store, f *answerFilter, set func(*Config)) (*Config, *infoLog) {
	t.Helper()
	log := &infoLog{}
	cfg := &Config{StatPrefix: "test", Stats: NewStats(store, "test"), Store: store, DrainTimeout: 5 * time.Second,
		AccessLogs: []AccessLogger{log}}
	cfg.Filters = []FilterFactory{{Name: "answer", Factory: func(cb httpfilter.Callbacks) httpfilter.Filter {
		f.cb = cb
		return f
	}}}
	if set != nil {
		set(cfg)
	}
	if err := cfg.Prepare(); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	return cfg, log
}

func newOptConn(cfg *Config, proto string) *conn {
	return &conn{cfg: cfg, nc: &network.Conn{}, http2: proto != "HTTP/1.1", http3: proto == "HTTP/3", drainCh: make(chan struct{})}
}

func TestHeadersWithUnderscores(t *testing.T) {
	req := []string{"x_foo", "1", "x-bar", "2", "y_z", "3"}
	all := []string{"x_foo", "x-bar", "y_z"}
	tests := []struct {
		name        string
		action      UnderscoresAction
		proto       string
		req         []string
		wantStatus  string   // "" for a reset stream
		wantSeen    []string // regular request header names the filter saw; nil when it did not run
		wantDetails string
		wantDPE     bool
		wantStats   map[string]uint64
	}{
		{
			name: "ALLOW passes them on", action: AllowUnderscores, proto: "HTTP/1.1", req: req,
			wantStatus: "200", wantSeen: all,
			wantStats: map[string]uint64{"http1.dropped_headers_with_underscores": 0},
		},
		{
			name: "DROP_HEADER HTTP/1.1: counted per header", action: DropUnderscores, proto: "HTTP/1.1", req: req,
			wantStatus: "200", wantSeen: []string{"x-bar"},
			wantStats: map[string]uint64{"http1.dropped_headers_with_underscores": 2, "http1.requests_rejected_with_underscores_in_headers": 0},
		},
		{
			name: "DROP_HEADER HTTP/2 counts under http2.", action: DropUnderscores, proto: "HTTP/2", req: req,
			wantStatus: "200", wantSeen: []string{"x-bar"},
			wantStats: map[string]uint64{"http2.dropped_headers_with_underscores": 2, "http1.dropped_headers_with_underscores": 0},
		},
		{
			// Envoy's HTTP/1 codec: sendProtocolError(400, http1.unexpected_underscore).
			name: "REJECT_REQUEST HTTP/1.1: 400 and a protocol error", action: RejectUnderscores, proto: "HTTP/1.1", req: req,
			wantStatus: "400", wantDetails: detailsHTTP1Underscore, wantDPE: true,
			wantStats: map[string]uint64{
				"http1.requests_rejected_with_underscores_in_headers": 1,
				"http.test.downstream_cx_protocol_error":              1,
				"http.test.downstream_rq_4xx":                         1,
				"http.test.downstream_rq_total":                       1,
			},
		},
		{
			// "HTTP/2 requests end with the stream reset."
			name: "REJECT_REQUEST HTTP/2: stream reset", action: RejectUnderscores, proto: "HTTP/2", req: req,
			wantStatus: "", wantDetails: detailsHTTP2Underscore, wantDPE: true,
			wantStats: map[string]uint64{
				"http2.requests_rejected_with_underscores_in_headers": 1,
				"http.test.downstream_rq_rx_reset":                    1,
				"http.test.downstream_rq_total":                       1,
			},
		},
		{
			name: "REJECT_REQUEST HTTP/3 counts under http3.", action: RejectUnderscores, proto: "HTTP/3", req: req,
			wantStatus: "", wantDetails: detailsHTTP3Underscore, wantDPE: true,
			wantStats: map[string]uint64{"http3.requests_rejected_with_underscores_in_headers": 1},
		},
		{
			name: "REJECT_REQUEST without underscores: served", action: RejectUnderscores, proto: "HTTP/1.1", req: []string{"x-bar", "2"},
			wantStatus: "200", wantSeen: []string{"x-bar"},
			wantStats: map[string]uint64{"http1.requests_rejected_with_underscores_in_headers": 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			var seen []string
			f := &answerFilter{seen: &seen}
			cfg, log := optConfig(t, store, f, func(c *Config) { c.HeadersWithUnderscores = tc.action })
			c := newOptConn(cfg, tc.proto)
			s := newOptStream(tc.proto, tc.req...)
			c.ServeStream(s)
			if got := s.status(); got != tc.wantStatus {
				t.Errorf("status = %q, want %q", got, tc.wantStatus)
			}
			if diff := cmp.Diff(tc.wantSeen, seen); diff != "" {
				t.Errorf("headers the filter saw (-want +got):\n%s", diff)
			}
			if log.n != 1 {
				t.Fatalf("access log entries = %d, want 1", log.n)
			}
			if log.details != tc.wantDetails && tc.wantDetails != "" {
				t.Errorf("response_code_details = %q, want %q", log.details, tc.wantDetails)
			}
			if log.flags != tc.wantDPE {
				t.Errorf("DownstreamProtocolError = %v, want %v", log.flags, tc.wantDPE)
			}
			if tc.wantStatus == "400" && s.resp.Get("connection") != "close" {
				t.Errorf("400 without connection: close: %v", s.resp.Fields)
			}
			for name, want := range tc.wantStats {
				if got := store.Counter(name).Value(); got != want {
					t.Errorf("%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

// TestUnderscoreStatsOnlyWhenUsed: with ALLOW (the default) the codec
// counters are not created at all.
func TestUnderscoreStatsOnlyWhenUsed(t *testing.T) {
	store := stats.NewStore()
	optConfig(t, store, &answerFilter{}, nil)
	for _, c := range store.Counters() {
		if c.Name() == "http1.dropped_headers_with_underscores" {
			t.Errorf("%s exists with ALLOW", c.Name())
		}
	}
}

func TestMaxRequestsPerConnection(t *testing.T) {
	tests := []struct {
		name  string
		proto string
		max   uint32
		n     int
		// wantClose: which responses carry connection: close (HTTP/1.1).
		wantClose []bool
		// wantDrainAt: the request after which the connection drains
		// (GOAWAY, HTTP/2); 0: never.
		wantDrainAt int
		wantStat    uint64
	}{
		{name: "HTTP/1.1 unlimited", proto: "HTTP/1.1", max: 0, n: 3, wantClose: []bool{false, false, false}},
		{name: "HTTP/1.1 second request closes", proto: "HTTP/1.1", max: 2, n: 2, wantClose: []bool{false, true}, wantStat: 1},
		{name: "HTTP/1.1 1 disables keep-alive", proto: "HTTP/1.1", max: 1, n: 1, wantClose: []bool{true}, wantStat: 1},
		{name: "HTTP/2 GOAWAY after the second stream", proto: "HTTP/2", max: 2, n: 3, wantDrainAt: 2, wantStat: 2},
		{name: "HTTP/2 unlimited", proto: "HTTP/2", max: 0, n: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			cfg, _ := optConfig(t, store, &answerFilter{}, func(c *Config) { c.MaxRequestsPerConnection = tc.max })
			c := newOptConn(cfg, tc.proto)
			for i := 1; i <= tc.n; i++ {
				s := newOptStream(tc.proto)
				c.ServeStream(s)
				if got := s.status(); got != "200" {
					t.Fatalf("request %d: status %q, want 200", i, got)
				}
				if tc.wantClose != nil {
					if got := s.resp.Get("connection") == "close"; got != tc.wantClose[i-1] {
						t.Errorf("request %d: connection: close = %v, want %v", i, got, tc.wantClose[i-1])
					}
				}
				drained := false
				select {
				case <-c.drainCh:
					drained = true
				default:
				}
				if want := tc.wantDrainAt != 0 && i >= tc.wantDrainAt; drained != want {
					t.Errorf("after request %d: drained = %v, want %v", i, drained, want)
				}
			}
			if got := store.Counter("http.test.downstream_cx_max_requests_reached").Value(); got != tc.wantStat {
				t.Errorf("downstream_cx_max_requests_reached = %d, want %d", got, tc.wantStat)
			}
		})
	}
}

// durationRoute is a route with the router's stream duration answers.
type durationRoute struct {
	d      time.Duration // StreamDuration
	set    bool
	msd    time.Duration // MaxStreamDuration
	msdSet bool
}

func (durationRoute) PerFilterConfig(string) any { return nil }
func (r durationRoute) StreamDuration(*hhttp.Headers) (time.Duration, bool) {
	return r.d, r.set
}
func (r durationRoute) MaxStreamDuration() (time.Duration, bool) { return r.msd, r.msdSet }

func TestMaxStreamDuration(t *testing.T) {
	const backend = time.Minute // how long the filter takes to answer
	tests := []struct {
		name  string
		hcm   time.Duration
		route httpfilter.Route
		open  bool // the request body is still arriving
		proto string
		// wantStatus: 200 when no limit fires; "" for a reset.
		wantStatus string
		wantAfter  time.Duration // when the stream ended
		wantStat   uint64
	}{
		{name: "no limit", proto: "HTTP/2", wantStatus: "200", wantAfter: backend},
		{
			// Envoy: 504 once the request is complete (maybeRequestTimeoutCode).
			name: "connection manager limit, no route", hcm: 10 * time.Second, proto: "HTTP/2",
			wantStatus: "504", wantAfter: 10 * time.Second, wantStat: 1,
		},
		{
			name: "connection manager limit, request still arriving: 408", hcm: 10 * time.Second, proto: "HTTP/1.1", open: true,
			wantStatus: "408", wantAfter: 10 * time.Second, wantStat: 1,
		},
		{
			name: "route silent: the connection manager's applies", hcm: 10 * time.Second, proto: "HTTP/2",
			route: durationRoute{}, wantStatus: "504", wantAfter: 10 * time.Second, wantStat: 1,
		},
		{
			name: "route's own limit wins", hcm: 10 * time.Second, proto: "HTTP/2",
			route: durationRoute{d: 3 * time.Second, set: true, msd: 3 * time.Second, msdSet: true}, wantStatus: "504", wantAfter: 3 * time.Second, wantStat: 1,
		},
		{
			name: "route's longer limit wins too", hcm: 10 * time.Second, proto: "HTTP/2",
			route: durationRoute{d: 30 * time.Second, set: true, msd: 30 * time.Second, msdSet: true}, wantStatus: "504", wantAfter: 30 * time.Second, wantStat: 1,
		},
		{
			// Envoy: "Explicitly configured 0 means no timeout".
			name: "route's explicit 0 disables the connection manager's", hcm: 10 * time.Second, proto: "HTTP/2",
			route: durationRoute{msd: 0, msdSet: true}, wantStatus: "200", wantAfter: backend,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := stats.NewStore()
				cfg, log := optConfig(t, store, &answerFilter{wait: backend}, func(c *Config) {
					c.MaxStreamDuration = tc.hcm
					c.Routes = fixedRoute{tc.route}
				})
				c := newOptConn(cfg, tc.proto)
				s := newOptStream(tc.proto)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				s.ctx, s.open = ctx, tc.open
				if tc.proto == "HTTP/1.1" {
					c.raw = deadlineConn{onDeadline: cancel}
				}
				start := time.Now()
				c.ServeStream(s)
				if got := time.Since(start); got != tc.wantAfter {
					t.Errorf("stream ended after %v, want %v", got, tc.wantAfter)
				}
				if got := s.status(); got != tc.wantStatus {
					t.Errorf("status = %q, want %q", got, tc.wantStatus)
				}
				if tc.wantStat > 0 && log.details != "max_duration_timeout" {
					t.Errorf("response_code_details = %q, want max_duration_timeout", log.details)
				}
				if got := store.Counter("http.test.downstream_rq_max_duration_reached").Value(); got != tc.wantStat {
					t.Errorf("downstream_rq_max_duration_reached = %d, want %d", got, tc.wantStat)
				}
			})
		})
	}
}

func TestMaxConnectionDuration(t *testing.T) {
	const (
		limit = time.Minute
		drain = 5 * time.Second
	)
	tests := []struct {
		name     string
		mux      bool
		busy     bool          // a stream is active when the drain timeout ends
		stopAt   time.Duration // the connection ends on its own then; 0: never
		wantStat uint64
		// wantClosedAt: when herald closes the socket; 0: it does not.
		wantClosedAt time.Duration
	}{
		{name: "HTTP/1.1 idle: closed after the drain timeout", wantStat: 1, wantClosedAt: limit + drain},
		{name: "HTTP/1.1 busy: left to the response's connection: close", busy: true, wantStat: 1},
		{name: "HTTP/2: GOAWAY, the codec closes", mux: true, wantStat: 1},
		{name: "connection ended before the limit", stopAt: limit / 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := stats.NewStore()
				cfg, _ := optConfig(t, store, &answerFilter{}, func(c *Config) { c.MaxConnectionDuration = limit; c.DrainTimeout = drain })
				proto := "HTTP/1.1"
				if tc.mux {
					proto = "HTTP/2"
				}
				c := newOptConn(cfg, proto)
				local, remote := net.Pipe()
				defer remote.Close()
				c.raw = local
				if tc.busy {
					c.state.Store(connActive)
				}
				start := time.Now()
				stop := c.armMaxConnectionDuration(start, tc.mux)
				closedAt := make(chan time.Duration, 1)
				go func() {
					remote.Read(make([]byte, 1))
					closedAt <- time.Since(start)
				}()
				if tc.stopAt > 0 {
					time.Sleep(tc.stopAt)
					stop()
				}
				time.Sleep(2 * (limit + drain))
				synctest.Wait()
				var got time.Duration
				select {
				case got = <-closedAt:
				default:
				}
				if got != tc.wantClosedAt {
					t.Errorf("socket closed at %v, want %v (0: open)", got, tc.wantClosedAt)
				}
				if got := store.Counter("http.test.downstream_cx_max_duration_reached").Value(); got != tc.wantStat {
					t.Errorf("downstream_cx_max_duration_reached = %d, want %d", got, tc.wantStat)
				}
				if drained := c.draining.Load(); drained != (tc.wantStat > 0) {
					t.Errorf("draining = %v, want %v", drained, tc.wantStat > 0)
				}
				stop()
				local.Close()
			})
		})
	}
}

// TestArmMaxConnectionDurationOff: without the option no timer exists.
func TestArmMaxConnectionDurationOff(t *testing.T) {
	c := newOptConn(&Config{}, "HTTP/1.1")
	if stop := c.armMaxConnectionDuration(time.Now(), false); stop != nil {
		t.Error("armMaxConnectionDuration returned a timer without max_connection_duration")
	}
}
