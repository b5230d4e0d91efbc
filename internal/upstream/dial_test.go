package upstream

import (
	"context"
	"errors"
	"github.com/herald-proxy/herald/internal/network/sockio"
	"io"
	"net"
	"testing"
	"testing/synctest"
	"time"

	"github.com/herald-proxy/herald/internal/stats"
)

func dialCluster(t *testing.T, opts ...Option) (*Manager, *stats.Store, *Cluster) {
	t.Helper()
	m, st := newTestManager(t, opts...)
	if err := m.Apply(context.Background(), parseClusters(t, `- {name: a, connect_timeout: 0.25s}`), prefix); err != nil {
		t.Fatal(err)
	}
	return m, st, m.Cluster("a")
}

func hostAt(c *Cluster, addr string) *Host {
	return c.newHost(addr, specFor(addr))
}

func TestDialCountsStats(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
	}()
	_, st, c := dialCluster(t)
	h := hostAt(c, ln.Addr().String())

	conn, err := c.Dial(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	peer := <-accepted
	if _, err := conn.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(peer, buf); err != nil {
		t.Fatal(err)
	}
	if _, err := peer.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, buf[:3]); err != nil {
		t.Fatal(err)
	}
	// TCP connections go through sockio's raw system calls.
	if sc, ok := conn.(*upstreamConn).Conn.(*sockio.Conn); !ok || sc.TCPConn == nil {
		t.Fatalf("upstream connection is %T, want a *sockio.Conn over TCP", conn.(*upstreamConn).Conn)
	}
	check := func(stage string, want map[string]int64) {
		t.Helper()
		for name, w := range want {
			var got int64
			if name == "upstream_cx_active" {
				got = st.Gauge("cluster.a." + name).Value()
			} else {
				got = int64(st.Counter("cluster.a." + name).Value())
			}
			if got != w {
				t.Errorf("%s: %s = %d, want %d", stage, name, got, w)
			}
		}
	}
	check("open", map[string]int64{"upstream_cx_total": 1, "upstream_cx_active": 1, "upstream_cx_tx_bytes_total": 5, "upstream_cx_rx_bytes_total": 3, "upstream_cx_connect_fail": 0})
	if h.Stats.CxActive.Load() != 1 || h.Stats.CxTotal.Load() != 1 {
		t.Errorf("host cx_active=%d cx_total=%d, want 1 1", h.Stats.CxActive.Load(), h.Stats.CxTotal.Load())
	}
	if st.Histogram("cluster.a.upstream_cx_connect_ms", stats.Milliseconds).Count() != 1 {
		t.Error("upstream_cx_connect_ms not recorded")
	}

	// The peer closes; our Read sees EOF; Close counts a remote destroy once.
	peer.Close()
	if _, err := conn.Read(buf); err != io.EOF {
		t.Fatalf("Read after peer close = %v, want EOF", err)
	}
	conn.Close()
	conn.Close()
	check("closed", map[string]int64{"upstream_cx_active": 0, "upstream_cx_destroy": 1, "upstream_cx_destroy_remote": 1, "upstream_cx_destroy_local": 0})
	if h.Stats.CxActive.Load() != 0 {
		t.Errorf("host cx_active = %d after close", h.Stats.CxActive.Load())
	}
}

func TestDialRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	_, st, c := dialCluster(t)
	h := hostAt(c, addr)
	if _, err := c.Dial(context.Background(), h); err == nil {
		t.Fatal("Dial to a closed port succeeded")
	}
	for name, want := range map[string]uint64{"upstream_cx_total": 1, "upstream_cx_connect_fail": 1, "upstream_cx_connect_timeout": 0, "upstream_cx_destroy_remote": 1} {
		if got := st.Counter("cluster.a." + name).Value(); got != want {
			t.Errorf("%s = %d, want %d", name, got, want)
		}
	}
	if st.Gauge("cluster.a.upstream_cx_active").Value() != 0 || h.Stats.CxConnectFail.Load() != 1 {
		t.Error("cx_active not back to 0 or host cx_connect_fail not counted")
	}
}

func TestDialTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A dialer that never connects: only connect_timeout ends it.
		blackhole := func(ctx context.Context, _, _ string) (net.Conn, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		_, st, c := dialCluster(t, WithDialer(blackhole))
		h := hostAt(c, "10.255.255.1:80")
		start := time.Now()
		_, err := c.Dial(context.Background(), h)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Dial error = %v, want deadline exceeded", err)
		}
		if got := time.Since(start); got != 250*time.Millisecond {
			t.Errorf("Dial gave up after %v, want connect_timeout 250ms", got)
		}
		for name, want := range map[string]uint64{"upstream_cx_connect_fail": 1, "upstream_cx_connect_timeout": 1, "upstream_cx_destroy_local": 1} {
			if got := st.Counter("cluster.a." + name).Value(); got != want {
				t.Errorf("%s = %d, want %d", name, got, want)
			}
		}
	})
}

func TestDialCancelledIsNotTimeout(t *testing.T) {
	blocked := func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	_, st, c := dialCluster(t, WithDialer(blocked))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Dial(ctx, hostAt(c, "10.0.0.1:80")); err == nil {
		t.Fatal("Dial with a cancelled context succeeded")
	}
	if got := st.Counter("cluster.a.upstream_cx_connect_timeout").Value(); got != 0 {
		t.Errorf("upstream_cx_connect_timeout = %d, want 0 for a cancelled dial", got)
	}
}
