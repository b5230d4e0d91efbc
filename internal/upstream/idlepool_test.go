package upstream

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

type fakeConn struct {
	id     int
	closed atomic.Bool
}

func (c *fakeConn) Close() error { c.closed.Store(true); return nil }

func hostAP(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func specFor(s string) clustertype.HostSpec {
	return clustertype.HostSpec{Addr: hostAP(s), Weight: 1}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time             { return c.t }
func (c *clock) advance(d time.Duration)    { c.t = c.t.Add(d) }
func newClock() *clock                      { return &clock{t: time.Unix(1000, 0)} }
func idOf(c interface{ Close() error }) int { return c.(*fakeConn).id }

func TestIdlePool(t *testing.T) {
	type op struct {
		put      int           // put conn with this id (>0)
		get      bool          // Get; want is the id expected (0: nil)
		want     int           // for get
		advance  time.Duration // move the clock first
		closeAll bool
		wantPut  bool
	}
	tests := []struct {
		name       string
		timeout    time.Duration
		max        int
		ops        []op
		wantClosed []int
	}{
		{name: "lifo", timeout: time.Minute, max: 10, ops: []op{
			{put: 1, wantPut: true}, {put: 2, wantPut: true},
			{get: true, want: 2}, {get: true, want: 1}, {get: true, want: 0},
		}},
		// The newest connection is past the timeout, so all are: closed, none returned.
		{name: "expired", timeout: time.Minute, max: 10, ops: []op{
			{put: 1, wantPut: true}, {put: 2, wantPut: true},
			{advance: time.Minute, get: true, want: 0},
		}, wantClosed: []int{1, 2}},
		// Only the old one expired; a Put prunes it.
		{name: "prune on put", timeout: time.Minute, max: 10, ops: []op{
			{put: 1, wantPut: true},
			{advance: 40 * time.Second, put: 2, wantPut: true},
			{advance: 30 * time.Second, put: 3, wantPut: true},
			{get: true, want: 3}, {get: true, want: 2}, {get: true, want: 0},
		}, wantClosed: []int{1}},
		{name: "full", timeout: time.Minute, max: 1, ops: []op{
			{put: 1, wantPut: true}, {put: 2, wantPut: false}, {get: true, want: 1},
		}},
		{name: "no timeout", timeout: 0, max: 10, ops: []op{
			{put: 1, wantPut: true}, {advance: 1000 * time.Hour, get: true, want: 1},
		}},
		{name: "closed", timeout: time.Minute, max: 10, ops: []op{
			{put: 1, wantPut: true}, {closeAll: true}, {put: 2, wantPut: false}, {get: true, want: 0},
		}, wantClosed: []int{1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			var p IdlePool
			p.init(tc.timeout, tc.max, clk.now)
			conns := map[int]*fakeConn{}
			for i, o := range tc.ops {
				clk.advance(o.advance)
				switch {
				case o.put > 0:
					c := &fakeConn{id: o.put}
					conns[o.put] = c
					if got := p.Put(c); got != o.wantPut {
						t.Fatalf("op %d: Put(%d) = %v, want %v", i, o.put, got, o.wantPut)
					}
				case o.get:
					got := 0
					if c := p.Get(); c != nil {
						got = idOf(c)
					}
					if got != o.want {
						t.Fatalf("op %d: Get = %d, want %d", i, got, o.want)
					}
				case o.closeAll:
					p.CloseAll()
				}
			}
			var closed []int
			for id := 1; id <= len(conns); id++ {
				if c := conns[id]; c != nil && c.closed.Load() {
					closed = append(closed, id)
				}
			}
			if len(closed) != len(tc.wantClosed) {
				t.Fatalf("closed = %v, want %v", closed, tc.wantClosed)
			}
			for i := range closed {
				if closed[i] != tc.wantClosed[i] {
					t.Fatalf("closed = %v, want %v", closed, tc.wantClosed)
				}
			}
		})
	}
}
