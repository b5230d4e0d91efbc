package connectionlimit

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	climitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/connection_limit/v3"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

const path = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"

func build(t *testing.T, yaml string) (*Filter, *stats.Store, error) {
	t.Helper()
	cfg := &climitv3.ConnectionLimit{}
	if _, err := bootstrap.Unmarshal("cl.yaml", []byte(yaml), cfg); err != nil {
		t.Fatalf("parse: %v", err)
	}
	store := stats.NewStore()
	f, err := Build(cfg, netfilter.BuildContext{Path: path, Stats: store})
	if err != nil {
		return nil, store, err
	}
	return f.(*Filter), store, nil
}

func newConn(t *testing.T) *network.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return network.NewConn(context.Background(), a, nil)
}

func TestRegistered(t *testing.T) {
	e, ok := netfilter.Registry.ByTypeURL(registry.TypeURL(&climitv3.ConnectionLimit{}))
	if !ok || e.Name != Name || e.Terminal {
		t.Fatalf("registered as %+v, %v; want non-terminal %s", e, ok, Name)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "no max_connections", yaml: "stat_prefix: s", wantErr: ".max_connections: max_connections is required"},
		{name: "no stat_prefix", yaml: "max_connections: 1", wantErr: ".stat_prefix: stat_prefix is required"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := build(t, tc.yaml)
			if err == nil || !strings.Contains(err.Error(), path+tc.wantErr) {
				t.Errorf("Build error = %v, want it to contain %q", err, path+tc.wantErr)
			}
		})
	}
}

// step opens (open: true) or closes the n-th connection opened so far.
type step struct {
	open bool
	n    int
	want bool // for open: allowed
}

func TestOnNewConnection(t *testing.T) {
	tests := []struct {
		name        string
		yaml        string
		steps       []step
		wantLimited uint64
		wantActive  int64
	}{
		{
			name: "limit then room after a close",
			yaml: "stat_prefix: tcp\nmax_connections: 2",
			steps: []step{
				{open: true, n: 0, want: true},
				{open: true, n: 1, want: true},
				{open: true, n: 2, want: false},
				{n: 2}, // the refused one closes
				{n: 0},
				{open: true, n: 3, want: true},
			},
			wantLimited: 1,
			wantActive:  2,
		},
		{
			name:       "runtime disabled",
			yaml:       "stat_prefix: tcp\nmax_connections: 1\nruntime_enabled: {default_value: false, runtime_key: k}",
			steps:      []step{{open: true, n: 0, want: true}, {open: true, n: 1, want: true}},
			wantActive: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, store, err := build(t, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			conns := map[int]*network.Conn{}
			for i, s := range tc.steps {
				if !s.open {
					conns[s.n].Closed()
					continue
				}
				conns[s.n] = newConn(t)
				if got := f.OnNewConnection(conns[s.n]); got != s.want {
					t.Errorf("step %d: connection %d allowed = %v, want %v", i, s.n, got, s.want)
				}
			}
			if got := store.Counter("connection_limit.tcp.limited_connections").Value(); got != tc.wantLimited {
				t.Errorf("limited_connections = %d, want %d", got, tc.wantLimited)
			}
			if got := store.Gauge("connection_limit.tcp.active_connections").Value(); got != tc.wantActive {
				t.Errorf("active_connections = %d, want %d", got, tc.wantActive)
			}
		})
	}
}

// TestDelay: a refused connection is held for delay before it is refused.
func TestDelay(t *testing.T) {
	f, _, err := build(t, "stat_prefix: tcp\nmax_connections: 1\ndelay: 0.1s")
	if err != nil {
		t.Fatal(err)
	}
	if !f.OnNewConnection(newConn(t)) {
		t.Fatal("first connection refused")
	}
	start := time.Now()
	if f.OnNewConnection(newConn(t)) {
		t.Fatal("second connection allowed")
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("refused after %v, want at least the 100ms delay", d)
	}
}
