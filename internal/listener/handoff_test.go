package listener

import (
	"context"
	"fmt"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
)

func TestDirectoryLookup(t *testing.T) {
	mk := func(network, addr string) *Listener {
		return &Listener{network: network, bound: netip.MustParseAddrPort(addr)}
	}
	exact := mk("tcp", "10.0.0.1:80")
	any4 := mk("tcp", "0.0.0.0:80")
	any6 := mk("tcp", "[::]:443")
	quic := mk("udp", "10.0.0.1:8443")
	stopped := mk("tcp", "10.0.0.2:80")
	stopped.closed = true
	d := NewDirectory([]*Listener{exact, any4, any6, quic, stopped})
	tests := []struct {
		name string
		dst  string
		want *Listener
	}{
		{name: "exact address", dst: "10.0.0.1:80", want: exact},
		// No listener on 10.0.0.3:80: the IPv4 wildcard on port 80.
		{name: "wildcard of the port", dst: "10.0.0.3:80", want: any4},
		{name: "IPv4-mapped address is IPv4", dst: "[::ffff:10.0.0.1]:80", want: exact},
		{name: "IPv6 wildcard", dst: "[2001:db8::1]:443", want: any6},
		// An IPv4 destination never matches the IPv6 wildcard.
		{name: "other family's wildcard", dst: "10.0.0.1:443", want: nil},
		{name: "no listener on the port", dst: "10.0.0.1:81", want: nil},
		// UDP (QUIC) listeners take no TCP hand-off.
		{name: "udp listener", dst: "10.0.0.1:8443", want: nil},
		// Envoy: "We do not return stopped listeners"; and no fallback to
		// the wildcard either.
		{name: "stopped listener", dst: "10.0.0.2:80", want: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := d.Lookup(netip.MustParseAddrPort(tc.dst)); got != tc.want {
				t.Errorf("Lookup(%s) = %v, want %v", tc.dst, got, tc.want)
			}
		})
	}
	if got := (*Directory)(nil).Lookup(netip.MustParseAddrPort("10.0.0.1:80")); got != nil {
		t.Errorf("nil directory: got %v", got)
	}
}

// restoreDst is a listener filter standing in for original_dst: it sets
// the connection's local address to dst, as the kernel's SO_ORIGINAL_DST
// would after an iptables REDIRECT.
type restoreDst struct {
	dst *atomic.Pointer[netip.AddrPort]
}

// MaxReadBytes implements listenerfilter.Filter.
func (restoreDst) MaxReadBytes() int { return 0 }

// OnData implements listenerfilter.Filter.
func (f restoreDst) OnData(c *network.Conn, _ []byte) listenerfilter.Status {
	if d := f.dst.Load(); d != nil {
		c.Local = *d
	}
	return listenerfilter.Continue
}

func TestUseOriginalDstHandOff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := stats.NewStore()
	var dir atomic.Pointer[Directory]
	var dst atomic.Pointer[netip.AddrPort]

	start := func(cfg *Config) *Listener {
		t.Helper()
		l, err := Bind(ctx, cfg, store)
		if err != nil {
			t.Fatal(err)
		}
		l.SetDirectory(&dir)
		l.Serve()
		t.Cleanup(l.CloseAll)
		return l
	}
	front := configNamed("front", false)
	front.UseOriginalDst = true
	front.ListenerFilters = []listenerfilter.Filter{restoreDst{dst: &dst}}
	plain := configNamed("plain", false)
	plain.ListenerFilters = []listenerfilter.Filter{restoreDst{dst: &dst}}
	lf, lp := start(front), start(plain)
	target := start(configNamed("target", false))
	dir.Store(NewDirectory([]*Listener{lf, lp, target}))

	tests := []struct {
		name string
		via  *Listener
		dst  netip.AddrPort // the restored original destination; zero: none
		want string
	}{
		{name: "handed to the listener of the original destination", via: lf, dst: target.Bound(), want: "target"},
		{name: "no original destination restored", via: lf, want: "front"},
		{name: "original destination is the listener's own", via: lf, dst: lf.Bound(), want: "front"},
		// No listener has the address: the accepting listener serves it.
		{name: "no listener for the original destination", via: lf, dst: netip.MustParseAddrPort("127.0.0.1:1"), want: "front"},
		// use_original_dst is off: the restored address only informs
		// filter chain matching.
		{name: "without use_original_dst", via: lp, dst: target.Bound(), want: "plain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.dst.IsValid() {
				dst.Store(&tc.dst)
			} else {
				dst.Store(nil)
			}
			if got := dial(t, tc.via).ask(); got != tc.want {
				t.Errorf("answered by %q, want %q", got, tc.want)
			}
		})
	}

	// A connection counts in the stats of the listener that serves it
	// only: Envoy's accepting listener hands the socket off before it
	// becomes a connection.
	for _, want := range []struct {
		l    *Listener
		name string
		n    uint64
	}{{l: lf, name: "front", n: 3}, {l: lp, name: "plain", n: 1}, {l: target, name: "target", n: 1}} {
		if got := store.Scope(want.l.statPrefix).Counter("downstream_cx_total").Value(); got != want.n {
			t.Errorf("%s: downstream_cx_total = %d, want %d", want.name, got, want.n)
		}
	}

	// A handed-off connection belongs to the target: it drains with it.
	dst.Store(func() *netip.AddrPort { a := target.Bound(); return &a }())
	c := dial(t, lf)
	if got := c.ask(); got != "target" {
		t.Fatalf("answered by %q, want target", got)
	}
	// The accepting listener lets go of the connection on its own
	// goroutine after the hand-off: poll.
	testutil.Eventually(t, 5*time.Second, func() error {
		if n := lf.ActiveConnections(); n != 0 {
			return fmt.Errorf("accepting listener still counts %d connections", n)
		}
		return nil
	})
	done := target.Remove(0)
	if got := c.read(); got != "bye" {
		t.Errorf("handed-off connection when its listener is removed: got %q, want bye", got)
	}
	waitDone(t, done, "remove target")
	// The target stopped: the front listener keeps its connections.
	if got := dial(t, lf).ask(); got != "front" {
		t.Errorf("after the target stopped: answered by %q, want front", got)
	}
}
