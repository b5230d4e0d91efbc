package http2

import (
	"bytes"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	xhttp2 "golang.org/x/net/http2"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// tinyHandler answers 200 with a one-byte body.
var tinyHandler = streamFunc(func(s hhttp.ServerStream) {
	h := &hhttp.Headers{}
	h.SetStatus(200)
	if s.WriteHeaders(h, false) == nil {
		_ = s.WriteData([]byte("k"), true)
	}
})

// holdHandler never answers: it waits for the stream to be reset.
var holdHandler = streamFunc(func(s hhttp.ServerStream) { <-s.Context().Done() })

// burst writes frames built by build in one write, so that the server reads
// them in one go.
func (rc *rawClient) burst(build func(fr *xhttp2.Framer)) {
	rc.t.Helper()
	var b bytes.Buffer
	build(xhttp2.NewFramer(&b, nil))
	if _, err := rc.c.Write(b.Bytes()); err != nil {
		rc.t.Fatal(err)
	}
}

// waitClosed reads until the connection ends and reports the GOAWAY seen
// on the way, if any.
func (rc *rawClient) waitClosed() *xhttp2.GoAwayFrame {
	rc.t.Helper()
	var ga *xhttp2.GoAwayFrame
	for {
		f, err := rc.readFrame()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				rc.t.Fatal("connection still open")
			}
			return ga
		}
		if g, ok := f.(*xhttp2.GoAwayFrame); ok {
			ga = &xhttp2.GoAwayFrame{LastStreamID: g.LastStreamID, ErrCode: g.ErrCode}
		}
	}
}

// TestServerFloodLimits: each http2_protocol_options flood limit applies
// its configured value.
func TestServerFloodLimits(t *testing.T) {
	u := func(v uint32) hhttp.OptionalUint32 { return hhttp.OptionalUint32{Value: v, Set: true} }
	emptyData := func(n int) func(rc *rawClient) {
		return func(rc *rawClient) {
			rc.headers(1, false, req("POST")...)
			rc.burst(func(fr *xhttp2.Framer) {
				for range n {
					_ = fr.WriteData(1, false, nil)
				}
			})
		}
	}
	priorities := func(n int) func(rc *rawClient) {
		return func(rc *rawClient) {
			rc.burst(func(fr *xhttp2.Framer) {
				for i := range n {
					_ = fr.WritePriority(uint32(2*i+1), xhttp2.PriorityParam{Weight: 1})
				}
			})
		}
	}
	pings := func(n int) func(rc *rawClient) {
		return func(rc *rawClient) {
			rc.burst(func(fr *xhttp2.Framer) {
				for range n {
					_ = fr.WritePing(false, [8]byte{})
				}
			})
		}
	}
	// windowUpdates sends n WINDOW_UPDATEs after one response (one opened
	// stream, one DATA frame sent: the body with END_STREAM).
	windowUpdates := func(n int) func(rc *rawClient) {
		return func(rc *rawClient) {
			rc.headers(1, true, getReq...)
			rc.waitFor("response end", func(f xhttp2.Frame) bool {
				df, ok := f.(*xhttp2.DataFrame)
				return ok && df.StreamEnded()
			})
			rc.burst(func(fr *xhttp2.Framer) {
				for range n {
					_ = fr.WriteWindowUpdate(0, 1)
				}
			})
		}
	}
	tests := []struct {
		name      string
		opts      hhttp.HTTP2Options
		send      func(rc *rawClient)
		wantClose bool
		wantCode  xhttp2.ErrCode // GOAWAY code when closed; ignored for outbound floods
		outbound  bool           // closed without GOAWAY (the peer is not reading)
	}{
		{name: "empty_frames_default_allows_one", send: emptyData(1)},
		{name: "empty_frames_default_closes_at_two", send: emptyData(2), wantClose: true, wantCode: xhttp2.ErrCodeEnhanceYourCalm},
		{
			// 0 is a valid limit: the first empty frame closes.
			name: "empty_frames_zero", opts: hhttp.HTTP2Options{MaxConsecutiveInboundFramesWithEmptyPayload: u(0)},
			send: emptyData(1), wantClose: true, wantCode: xhttp2.ErrCodeEnhanceYourCalm,
		},
		{name: "empty_frames_three_allows_three", opts: hhttp.HTTP2Options{MaxConsecutiveInboundFramesWithEmptyPayload: u(3)}, send: emptyData(3)},
		{
			name: "empty_frames_three_closes_at_four", opts: hhttp.HTTP2Options{MaxConsecutiveInboundFramesWithEmptyPayload: u(3)},
			send: emptyData(4), wantClose: true, wantCode: xhttp2.ErrCodeEnhanceYourCalm,
		},
		{name: "priority_two_allows_two", opts: hhttp.HTTP2Options{MaxInboundPriorityFramesPerStream: u(2)}, send: priorities(2)},
		{
			// max_inbound_priority_frames_per_stream * (1 + opened_streams).
			name: "priority_two_closes_at_three", opts: hhttp.HTTP2Options{MaxInboundPriorityFramesPerStream: u(2)},
			send: priorities(3), wantClose: true, wantCode: xhttp2.ErrCodeEnhanceYourCalm,
		},
		{name: "priority_default_allows_100", send: priorities(100)},
		{
			// 5 + 2 * (opened_streams + limit * outbound_data_frames) =
			// 5 + 2 * (1 + 1*1) = 9.
			name: "window_update_one_allows_9", opts: hhttp.HTTP2Options{MaxInboundWindowUpdateFramesPerDataFrameSent: 1},
			send: windowUpdates(9),
		},
		{
			name: "window_update_one_closes_at_10", opts: hhttp.HTTP2Options{MaxInboundWindowUpdateFramesPerDataFrameSent: 1},
			send: windowUpdates(10), wantClose: true, wantCode: xhttp2.ErrCodeEnhanceYourCalm,
		},
		{
			// Default 10: 5 + 2 * (1 + 10) = 27.
			name: "window_update_default_allows_27", send: windowUpdates(27),
		},
		{
			name: "window_update_default_closes_at_28", send: windowUpdates(28),
			wantClose: true, wantCode: xhttp2.ErrCodeEnhanceYourCalm,
		},
		{name: "control_frames_default_allows_20", send: pings(20)},
		{
			// Twenty PING ACKs queued at once exceed a limit of 5.
			name: "control_frames_five", opts: hhttp.HTTP2Options{MaxOutboundControlFrames: 5},
			send: pings(20), wantClose: true, outbound: true,
		},
		{
			name: "outbound_frames_five", opts: hhttp.HTTP2Options{MaxOutboundFrames: 5},
			send: pings(20), wantClose: true, outbound: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			ts := startServer(t, hhttp.ServerOptions{HTTP2: &o}, tinyHandler, nil)
			rc := dialRaw(t, ts.addr)
			tc.send(rc)
			if !tc.wantClose {
				// Still serving: a PING is answered.
				if err := rc.fr.WritePing(false, [8]byte{9}); err != nil {
					t.Fatal(err)
				}
				rc.waitFor("PING ACK", func(f xhttp2.Frame) bool {
					if ga, ok := f.(*xhttp2.GoAwayFrame); ok {
						t.Fatalf("GOAWAY %v: connection closed", ga.ErrCode)
					}
					p, ok := f.(*xhttp2.PingFrame)
					return ok && p.IsAck() && p.Data[0] == 9
				})
				return
			}
			ga := rc.waitClosed()
			if tc.outbound {
				return
			}
			if ga == nil || ga.ErrCode != tc.wantCode {
				t.Errorf("GOAWAY = %+v, want code %v", ga, tc.wantCode)
			}
		})
	}
}

// TestServerHpackTableSize: hpack_table_size is advertised as
// SETTINGS_HEADER_TABLE_SIZE (absent at the default 4096) and exchanges
// still work with it, 0 included.
func TestServerHpackTableSize(t *testing.T) {
	tests := []struct {
		name   string
		opts   *hhttp.HTTP2Options
		want   uint32
		wantOK bool
	}{
		{name: "default", opts: nil},
		{name: "zero", opts: &hhttp.HTTP2Options{HpackTableSize: hhttp.OptionalUint32{Set: true}}, want: 0, wantOK: true},
		{name: "large", opts: &hhttp.HTTP2Options{HpackTableSize: hhttp.OptionalUint32{Value: 65536, Set: true}}, want: 65536, wantOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, hhttp.ServerOptions{HTTP2: tc.opts}, tinyHandler, nil)
			rc, settings := dialRawSettings(t, ts.addr)
			got, ok := settings[xhttp2.SettingHeaderTableSize]
			if ok != tc.wantOK || got != tc.want {
				t.Errorf("SETTINGS_HEADER_TABLE_SIZE = %d (sent %v), want %d (sent %v)", got, ok, tc.want, tc.wantOK)
			}
			for id := uint32(1); id <= 5; id += 2 {
				rc.headers(id, true, req("GET", "x-repeat", "same value every time")...)
				if _, h := rc.waitHeaders(id); len(h) < 2 || h[1] != "200" {
					t.Fatalf("stream %d answered %q", id, h)
				}
			}
		})
	}
}

// TestServerKeepalive: connection_keepalive PINGs on its interval and
// closes the connection when nothing arrives within the timeout after a
// PING; a client that answers keeps the connection.
func TestServerKeepalive(t *testing.T) {
	ka := hhttp.KeepaliveOptions{Interval: 20 * time.Millisecond, Timeout: 200 * time.Millisecond, IntervalJitterPercent: 15}
	opts := hhttp.ServerOptions{HTTP2: &hhttp.HTTP2Options{Keepalive: ka}}

	t.Run("timeout_closes", func(t *testing.T) {
		ts := startServer(t, opts, tinyHandler, nil)
		rc := dialRaw(t, ts.addr)
		rc.waitFor("keepalive PING", func(f xhttp2.Frame) bool {
			p, ok := f.(*xhttp2.PingFrame)
			return ok && !p.IsAck()
		})
		start := time.Now()
		if ga := rc.waitClosed(); ga != nil {
			t.Errorf("GOAWAY %v before the keepalive close; Envoy closes without flushing", ga.ErrCode)
		}
		if d := time.Since(start); d < ka.Timeout/2 {
			t.Errorf("closed %v after the PING, want about %v", d, ka.Timeout)
		}
	})
	t.Run("acked_stays_open", func(t *testing.T) {
		ts := startServer(t, opts, tinyHandler, nil)
		rc := dialRaw(t, ts.addr)
		// Three PINGs, each answered: each ACK schedules the next PING,
		// and the connection outlives several timeouts' worth of PINGs.
		for i := range 3 {
			p := rc.waitFor("keepalive PING", func(f xhttp2.Frame) bool {
				p, ok := f.(*xhttp2.PingFrame)
				return ok && !p.IsAck()
			}).(*xhttp2.PingFrame)
			if err := rc.fr.WritePing(true, p.Data); err != nil {
				t.Fatalf("PING ACK %d: %v", i, err)
			}
		}
		rc.headers(1, true, getReq...)
		if _, h := rc.waitHeaders(1); len(h) < 2 || h[1] != "200" {
			t.Errorf("request after keepalives answered %q", h)
		}
	})
	t.Run("other_frames_extend_timeout", func(t *testing.T) {
		// No ACK, but frames keep arriving: Envoy extends the timeout on
		// every frame received (onBeforeFrameReceived).
		ts := startServer(t, opts, tinyHandler, nil)
		rc := dialRaw(t, ts.addr)
		rc.waitFor("keepalive PING", func(f xhttp2.Frame) bool {
			p, ok := f.(*xhttp2.PingFrame)
			return ok && !p.IsAck()
		})
		deadline := time.Now().Add(3 * ka.Timeout)
		id := uint32(1)
		for ; time.Now().Before(deadline); id += 2 {
			rc.headers(id, true, getReq...)
			rc.waitHeaders(id)
		}
		rc.headers(id, true, getReq...)
		if _, h := rc.waitHeaders(id); len(h) < 2 || h[1] != "200" {
			t.Errorf("request answered %q", h)
		}
	})
}

// TestServerPrematureResets: a client that opens streams and resets them
// before any response (rapid reset, CVE-2023-44487) loses its connection
// once half of premature_reset_total_stream_count streams were premature,
// and the callback counts it once; normal traffic and streams reset after
// their response do not count.
func TestServerPrematureResets(t *testing.T) {
	const total = 10
	tests := []struct {
		name      string
		h         hhttp.StreamHandler
		run       func(rc *rawClient)
		wantClose bool
	}{
		{
			name: "rapid_reset",
			h:    holdHandler,
			run: func(rc *rawClient) {
				for id := uint32(1); id < 2*total; id += 2 {
					rc.headers(id, false, req("POST")...)
					if err := rc.fr.WriteRSTStream(id, xhttp2.ErrCodeCancel); err != nil {
						return
					}
				}
			},
			wantClose: true,
		},
		{
			name: "normal_traffic",
			h:    tinyHandler,
			run: func(rc *rawClient) {
				for id := uint32(1); id < 6*total; id += 2 {
					rc.headers(id, true, getReq...)
					rc.waitFor("response end", func(f xhttp2.Frame) bool {
						df, ok := f.(*xhttp2.DataFrame)
						return ok && df.StreamEnded() && df.StreamID == id
					})
				}
			},
		},
		{
			// A response started: the reset is not premature.
			name: "reset_after_response",
			h: streamFunc(func(s hhttp.ServerStream) {
				h := &hhttp.Headers{}
				h.SetStatus(200)
				if s.WriteHeaders(h, false) == nil {
					<-s.Context().Done()
				}
			}),
			run: func(rc *rawClient) {
				for id := uint32(1); id < 4*total; id += 2 {
					rc.headers(id, false, req("POST")...)
					rc.waitHeaders(id)
					if err := rc.fr.WriteRSTStream(id, xhttp2.ErrCodeCancel); err != nil {
						return
					}
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var counted atomic.Int32
			opts := hhttp.ServerOptions{
				PrematureResetTotalStreamCount: total,
				OnPrematureResets:              func() { counted.Add(1) },
			}
			ts := startServer(t, opts, tc.h, nil)
			rc := dialRaw(t, ts.addr)
			tc.run(rc)
			if !tc.wantClose {
				if err := rc.fr.WritePing(false, [8]byte{7}); err != nil {
					t.Fatal(err)
				}
				rc.waitFor("PING ACK", func(f xhttp2.Frame) bool {
					if _, ok := f.(*xhttp2.GoAwayFrame); ok {
						t.Fatal("GOAWAY: connection closed")
					}
					p, ok := f.(*xhttp2.PingFrame)
					return ok && p.IsAck() && p.Data[0] == 7
				})
				if n := counted.Load(); n != 0 {
					t.Errorf("premature-reset closes counted = %d, want 0", n)
				}
				return
			}
			ga := rc.waitClosed()
			if ga == nil || ga.ErrCode != xhttp2.ErrCodeNo {
				t.Errorf("GOAWAY = %+v, want NO_ERROR before the close", ga)
			}
			if n := counted.Load(); n != 1 {
				t.Errorf("premature-reset closes counted = %d, want 1", n)
			}
		})
	}
}

// TestPrematureResetRules checks Envoy's two rules in isolation.
func TestPrematureResetRules(t *testing.T) {
	lifetimes := []struct {
		name     string
		lifetime time.Duration
		min      time.Duration
		want     bool
	}{
		// Envoy compares whole seconds: lifetime_s > min_s is not premature.
		{name: "instant", lifetime: 0, min: time.Second, want: true},
		{name: "1.9s_is_still_young", lifetime: 1900 * time.Millisecond, min: time.Second, want: true},
		{name: "2s_is_old", lifetime: 2 * time.Second, min: time.Second, want: false},
		{name: "min_0_1s_old", lifetime: time.Second, min: 0, want: false},
	}
	for _, tc := range lifetimes {
		t.Run(tc.name, func(t *testing.T) {
			if got := prematureLifetime(tc.lifetime, tc.min); got != tc.want {
				t.Errorf("prematureLifetime(%v, %v) = %v, want %v", tc.lifetime, tc.min, got, tc.want)
			}
		})
	}
	counts := []struct {
		name                    string
		closed, premature, want int
	}{
		{name: "below_total_below_half", closed: 100, premature: 249, want: 0},
		{name: "below_total_half_reached", closed: 300, premature: 250, want: 1},
		{name: "at_total_under_half", closed: 500, premature: 249, want: 0},
		{name: "at_total_half", closed: 500, premature: 250, want: 1},
		{name: "past_total_under_half", closed: 1000, premature: 499, want: 0},
		{name: "past_total_half", closed: 1000, premature: 500, want: 1},
	}
	for _, tc := range counts {
		t.Run(tc.name, func(t *testing.T) {
			got := tooManyPrematureResets(tc.closed, tc.premature, 500)
			if got != (tc.want == 1) {
				t.Errorf("tooManyPrematureResets(%d, %d, 500) = %v", tc.closed, tc.premature, got)
			}
		})
	}
}
