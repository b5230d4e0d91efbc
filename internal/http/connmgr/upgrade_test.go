package connmgr

import (
	"sync"
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestIsUpgrade(t *testing.T) {
	tests := []struct {
		name   string
		fields [][2]string
		want   bool
	}{
		{name: "websocket", fields: [][2]string{{"connection", "Upgrade"}, {"upgrade", "websocket"}}, want: true},
		{name: "token among others", fields: [][2]string{{"connection", "keep-alive, UPGRADE"}, {"upgrade", "h2c"}}, want: true},
		{name: "second connection field", fields: [][2]string{{"connection", "keep-alive"}, {"connection", "upgrade"}, {"upgrade", "x"}}, want: true},
		{name: "upgrade without connection token", fields: [][2]string{{"connection", "keep-alive"}, {"upgrade", "websocket"}}},
		{name: "connection token without upgrade", fields: [][2]string{{"connection", "upgrade"}}},
		{name: "token is a prefix only", fields: [][2]string{{"connection", "upgrades"}, {"upgrade", "websocket"}}},
		{name: "plain request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &hhttp.Headers{}
			for _, f := range tt.fields {
				h.Add(f[0], f[1])
			}
			if got := isUpgrade(h); got != tt.want {
				t.Errorf("isUpgrade = %v, want %v", got, tt.want)
			}
		})
	}
}

// upgradeTestRoute is a route with RouteAction.upgrade_configs.
type upgradeTestRoute map[string]bool

func (upgradeTestRoute) PerFilterConfig(string) any { return nil }

func (r upgradeTestRoute) UpgradeEnabled(typ string) (enabled, set bool) {
	enabled, set = r[typ]
	return enabled, set
}

func TestUpgradeAllowed(t *testing.T) {
	ws := []UpgradeConfig{{Type: "websocket", Enabled: true}}
	tests := []struct {
		name  string
		typ   string
		route any
		cfgs  []UpgradeConfig
		want  bool
	}{
		{name: "no upgrade_configs", typ: "websocket"},
		{name: "connection manager enables", typ: "websocket", cfgs: ws, want: true},
		{name: "type matched case-insensitively", typ: "WebSocket", cfgs: ws, want: true},
		{name: "other type refused", typ: "x-custom", cfgs: ws},
		{name: "connection manager entry disabled", typ: "websocket", cfgs: []UpgradeConfig{{Type: "websocket"}}},
		// Envoy's createUpgradeFilterChain: a route entry wins either way.
		{name: "route disables an enabled type", typ: "websocket", route: upgradeTestRoute{"websocket": false}, cfgs: ws},
		{name: "route enables a type the connection manager lacks", typ: "x-custom", route: upgradeTestRoute{"x-custom": true}, cfgs: ws, want: true},
		{name: "route enables a disabled type", typ: "websocket", route: upgradeTestRoute{"websocket": true}, cfgs: []UpgradeConfig{{Type: "websocket"}}, want: true},
		{name: "route silent: the connection manager decides", typ: "websocket", route: upgradeTestRoute{"x-custom": false}, cfgs: ws, want: true},
		{name: "route without upgrade_configs support", typ: "websocket", route: struct{}{}, cfgs: ws, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := upgradeAllowed(tt.typ, tt.route, tt.cfgs); got != tt.want {
				t.Errorf("upgradeAllowed(%q) = %v, want %v", tt.typ, got, tt.want)
			}
		})
	}
}

// headerPipeStream is a pipeStream that also keeps the response headers.
type headerPipeStream struct {
	*pipeStream
	hmu  sync.Mutex
	resp *hhttp.Headers
}

func (s *headerPipeStream) WriteHeaders(h *hhttp.Headers, end bool) error {
	s.hmu.Lock()
	s.resp = h.Clone()
	s.hmu.Unlock()
	return s.pipeStream.WriteHeaders(h, end)
}

// tunnelFilter answers an upgrade with status from its own goroutine
// (the router's duplex mode) and records what the request direction
// carried; with a 101 it echoes the first chunk, then ends the response.
type tunnelFilter struct {
	cb     httpfilter.Callbacks
	status string
	began  bool
	req    *hhttp.Headers

	chunks chan []byte
	done   chan struct{}
	mu     sync.Mutex
	got    []byte // request bytes after the response ended
	ended  bool   // the request direction ended
}

func (f *tunnelFilter) DecodeHeaders(h *hhttp.Headers, end bool) httpfilter.Status {
	f.req = h.Clone()
	f.chunks, f.done = make(chan []byte, 16), make(chan struct{})
	ce, ok := f.cb.(httpfilter.ConcurrentEncoder)
	if !ok || !ce.BeginConcurrentEncode(f.done) {
		close(f.done)
		return httpfilter.Stop
	}
	f.began = true
	go f.encode()
	return httpfilter.Stop
}

func (f *tunnelFilter) encode() {
	defer close(f.done)
	h := &hhttp.Headers{}
	h.Add(hhttp.Status, f.status)
	if f.status == "101" {
		h.Add("upgrade", "websocket")
		h.Add("connection", "Upgrade")
	}
	if f.cb.EncodeHeaders(h, false) != nil {
		return
	}
	if f.status == "101" {
		if b, ok := <-f.chunks; ok {
			f.cb.EncodeData(b, false)
		}
	}
	f.cb.EncodeData(nil, true)
}

func (f *tunnelFilter) DecodeData(data []byte, end bool) httpfilter.Status {
	select {
	case <-f.done:
		f.mu.Lock()
		f.got = append(f.got, data...)
		f.ended = f.ended || end
		f.mu.Unlock()
	default:
		if len(data) > 0 {
			f.chunks <- append([]byte(nil), data...)
		}
	}
	if end {
		<-f.done
	}
	return httpfilter.Stop
}

func (f *tunnelFilter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Stop }

func TestUpgradeStream(t *testing.T) {
	wsHeaders := func(s *pipeStream) {
		s.headers.Add("connection", "Upgrade")
		s.headers.Add("upgrade", "websocket")
		s.headers.Add("keep-alive", "timeout=5")
	}
	tests := []struct {
		name       string
		upgrades   []UpgradeConfig
		route      httpfilter.Route
		status     string // the filter's answer
		wantStatus string
		wantKept   bool // the filter saw connection and upgrade
		wantStats  map[string]uint64
	}{
		{
			name:       "allowed upgrade: 101, then the request direction outlives the response",
			upgrades:   []UpgradeConfig{{Type: "WebSocket", Enabled: true}},
			route:      upgradeTestRoute{},
			status:     "101",
			wantStatus: "101",
			wantKept:   true,
			wantStats:  map[string]uint64{"downstream_cx_upgrades_total": 1, "downstream_rq_1xx": 1, "downstream_rq_ws_on_non_ws_route": 0},
		},
		{
			name:       "allowed upgrade refused upstream: the answer passes through",
			upgrades:   []UpgradeConfig{{Type: "websocket", Enabled: true}},
			route:      upgradeTestRoute{},
			status:     "404",
			wantStatus: "404",
			wantKept:   true,
			wantStats:  map[string]uint64{"downstream_cx_upgrades_total": 1, "downstream_rq_4xx": 1},
		},
		{
			name:       "route disables the type: 403",
			upgrades:   []UpgradeConfig{{Type: "websocket", Enabled: true}},
			route:      upgradeTestRoute{"websocket": false},
			wantStatus: "403",
			wantStats:  map[string]uint64{"downstream_cx_upgrades_total": 0, "downstream_rq_ws_on_non_ws_route": 1},
		},
		{
			name:       "no upgrade_configs: 403",
			route:      upgradeTestRoute{},
			wantStatus: "403",
			wantStats:  map[string]uint64{"downstream_rq_ws_on_non_ws_route": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := newPipeStream()
			ps.proto = "HTTP/1.1"
			ps.headers.Fields[0].Value = "GET"
			wsHeaders(ps)
			s := &headerPipeStream{pipeStream: ps}
			store := stats.NewStore()
			cfg := &Config{StatPrefix: "test", Stats: NewStats(store, "test"), Store: store, Upgrades: tt.upgrades,
				Routes: fixedRoute{tt.route}}
			f := &tunnelFilter{status: tt.status}
			cfg.Filters = []FilterFactory{{Name: "tunnel", Factory: func(cb httpfilter.Callbacks) httpfilter.Filter {
				f.cb = cb
				return f
			}}}
			c := &conn{cfg: cfg, nc: &network.Conn{}}
			served := make(chan struct{})
			go func() {
				defer close(served)
				c.ServeStream(s)
			}()
			ps.waitFor(t, "the response", func(s *pipeStream) bool { return s.status != "" })
			if tt.status == "101" {
				ps.in <- []byte("ping")
				ps.waitFor(t, "the end of the response", func(s *pipeStream) bool { return s.ended })
				if got := string(ps.body); got != "ping" {
					t.Errorf("tunnel body = %q, want ping", got)
				}
				// The response ended: the request direction goes on.
				ps.in <- []byte("after")
				close(ps.in)
			} else if tt.status != "" {
				ps.waitFor(t, "the end of the response", func(s *pipeStream) bool { return s.ended })
				close(ps.reset) // the codec wakes the read once a refusal went out
			}
			waitClosed(t, served, "ServeStream")
			if ps.status != tt.wantStatus {
				t.Errorf("status = %q, want %q", ps.status, tt.wantStatus)
			}
			if tt.wantStatus == "101" {
				s.hmu.Lock()
				if s.resp.Get("upgrade") != "websocket" || s.resp.Get("connection") != "Upgrade" {
					t.Errorf("101 headers lost connection/upgrade: %v", s.resp.Fields)
				}
				s.hmu.Unlock()
				f.mu.Lock()
				if string(f.got) != "after" || !f.ended {
					t.Errorf("request bytes after the response = %q (ended %v), want after and the end", f.got, f.ended)
				}
				f.mu.Unlock()
			}
			if f.req != nil {
				kept := f.req.Get("upgrade") == "websocket" && f.req.Get("connection") == "Upgrade"
				if kept != tt.wantKept {
					t.Errorf("upgrade headers kept = %v, want %v (%v)", kept, tt.wantKept, f.req.Fields)
				}
				if f.req.Has("keep-alive") {
					t.Error("keep-alive was forwarded; only connection and upgrade survive on upgrades")
				}
				if tt.wantKept && !f.began {
					t.Error("BeginConcurrentEncode refused an allowed HTTP/1.1 upgrade")
				}
			}
			for name, want := range tt.wantStats {
				if got := store.Counter("http.test." + name).Value(); got != want {
					t.Errorf("%s = %d, want %d", name, got, want)
				}
			}
			if got := store.Gauge("http.test.downstream_cx_upgrades_active").Value(); got != 0 {
				t.Errorf("downstream_cx_upgrades_active = %d after the stream, want 0", got)
			}
		})
	}
}

// fixedRoute resolves every request to one route.
type fixedRoute struct{ rt httpfilter.Route }

func (r fixedRoute) Resolve(*hhttp.Headers, uint16) httpfilter.Route { return r.rt }
