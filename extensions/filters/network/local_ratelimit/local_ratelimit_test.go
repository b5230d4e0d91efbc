package localratelimit

import (
	"strings"
	"testing"
	"time"

	lrlnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/local_ratelimit/v3"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

const path = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config"

func build(t *testing.T, yaml string) (*Filter, *stats.Store, error) {
	t.Helper()
	cfg := &lrlnetv3.LocalRateLimit{}
	if _, err := bootstrap.Unmarshal("lrl.yaml", []byte(yaml), cfg); err != nil {
		t.Fatalf("parse: %v", err)
	}
	store := stats.NewStore()
	f, err := Build(cfg, netfilter.BuildContext{Path: path, Stats: store})
	if err != nil {
		return nil, store, err
	}
	return f.(*Filter), store, nil
}

func TestRegistered(t *testing.T) {
	e, ok := netfilter.Registry.ByTypeURL(registry.TypeURL(&lrlnetv3.LocalRateLimit{}))
	if !ok || e.Name != Name || e.Terminal {
		t.Fatalf("registered as %+v, %v; want non-terminal %s", e, ok, Name)
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // below path
	}{
		{name: "no token_bucket", yaml: "stat_prefix: s", wantErr: ".token_bucket: token_bucket is required"},
		{name: "fill_interval under 50ms", yaml: "stat_prefix: s\ntoken_bucket: {max_tokens: 1, fill_interval: 0.01s}", wantErr: ".token_bucket.fill_interval: local rate limit token bucket fill timer must be >= 50ms"},
		{name: "share_key", yaml: "stat_prefix: s\nshare_key: k\ntoken_bucket: {max_tokens: 1, fill_interval: 1s}", wantErr: ".share_key: share_key is not supported by herald yet"},
		{name: "no stat_prefix", yaml: "token_bucket: {max_tokens: 1, fill_interval: 1s}", wantErr: ".stat_prefix: stat_prefix is required"},
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

func TestOnNewConnection(t *testing.T) {
	const s = int64(time.Second)
	tests := []struct {
		name string
		yaml string
		at   []int64 // connection times, from the start
		want []bool
	}{
		{
			name: "max_tokens then refused",
			yaml: "stat_prefix: tcp\ntoken_bucket: {max_tokens: 2, fill_interval: 10s}",
			at:   []int64{0, 0, 0},
			want: []bool{true, true, false},
		},
		{
			// tokens_per_fill defaults to 1: one token per fill_interval.
			name: "refills",
			yaml: "stat_prefix: tcp\ntoken_bucket: {max_tokens: 1, fill_interval: 1s}",
			at:   []int64{0, s / 2, s},
			want: []bool{true, false, true},
		},
		{
			name: "runtime_enabled false lets everything through",
			yaml: "stat_prefix: tcp\ntoken_bucket: {max_tokens: 1, fill_interval: 10s}\nruntime_enabled: {default_value: false, runtime_key: k}",
			at:   []int64{0, 0, 0},
			want: []bool{true, true, true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, store, err := build(t, tc.yaml)
			if err != nil {
				t.Fatal(err)
			}
			start := f.now()
			var clock int64
			f.now = func() int64 { return start + clock }
			var refused uint64
			for i, at := range tc.at {
				clock = at
				got := f.OnNewConnection(nil)
				if got != tc.want[i] {
					t.Errorf("connection #%d at +%v = %v, want %v", i, time.Duration(at), got, tc.want[i])
				}
				if !got {
					refused++
				}
			}
			if got := store.Counter("local_rate_limit.tcp.rate_limited").Value(); got != refused {
				t.Errorf("local_rate_limit.tcp.rate_limited = %d, want %d", got, refused)
			}
		})
	}
}
