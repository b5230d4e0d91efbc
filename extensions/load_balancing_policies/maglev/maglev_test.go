package maglev

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	maglevv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/maglev/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// host is a fake lbpolicy.Host that is also lbpolicy.Addressed.
type host struct {
	w        uint32
	addr     string
	hostname string
}

func (h host) Weight() uint32        { return h.w }
func (h host) ActiveRequests() int64 { return 0 }
func (h host) Address() string       { return h.addr }
func (h host) Hostname() string      { return h.hostname }

func weighted(weights ...uint32) []lbpolicy.Host {
	out := make([]lbpolicy.Host, len(weights))
	for i, w := range weights {
		out[i] = host{w: w, addr: fmt.Sprintf("10.0.0.%d:80", i+1), hostname: fmt.Sprintf("h%d.example", i+1)}
	}
	return out
}

func build(t testing.TB, cfg *maglevv3.Maglev) *Policy {
	t.Helper()
	pol, err := Build(cfg, lbpolicy.BuildContext{Path: "p", Seed: 1})
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	return pol.(*Policy)
}

func pickHash(p lbpolicy.Picker, h uint64) int {
	return p.Pick(&lbpolicy.Context{Hash: h, HasHash: true})
}

// slotCounts counts the table entries of each host.
func slotCounts(p lbpolicy.Picker, n int) []int {
	counts := make([]int, n)
	for _, s := range p.(*table).slots {
		counts[s]++
	}
	return counts
}

func TestTableShares(t *testing.T) {
	tests := []struct {
		name    string
		size    uint64
		weights []uint32
		tol     float64
	}{
		{name: "equal default size", size: DefaultTableSize, weights: []uint32{1, 1, 1, 1, 1, 1, 1}, tol: 0.0001},
		{name: "weighted", size: DefaultTableSize, weights: []uint32{1, 2, 3}, tol: 0.001},
		{name: "weighted small table", size: 1009, weights: []uint32{5, 1, 1, 1}, tol: 0.01},
		{name: "single host", size: 7, weights: []uint32{3}, tol: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := build(t, &maglevv3.Maglev{TableSize: wrapperspb.UInt64(tc.size)}).NewPicker(weighted(tc.weights...))
			counts := slotCounts(p, len(tc.weights))
			var total float64
			for _, w := range tc.weights {
				total += float64(w)
			}
			for i, w := range tc.weights {
				share := float64(counts[i]) / float64(tc.size)
				if math.Abs(share-float64(w)/total) > tc.tol {
					t.Errorf("host %d share = %.5f, want %.5f ± %v (counts %v)", i, share, float64(w)/total, tc.tol, counts)
				}
			}
		})
	}
}

func TestEnvoyPermutation(t *testing.T) {
	// In the first round the first host in key order takes its preferred
	// slot, offset = xxHash64(key) % table_size, with Envoy's key (the
	// address, or the hostname with use_hostname_for_hashing).
	hs := []lbpolicy.Host{
		host{w: 1, addr: "10.0.0.9:80", hostname: "b.example"},
		host{w: 1, addr: "10.0.0.1:80", hostname: "z.example"},
	}
	tests := []struct {
		name        string
		useHostname bool
		firstKey    string
		want        int
	}{
		{name: "address", firstKey: "10.0.0.1:80", want: 1},
		{name: "hostname", useHostname: true, firstKey: "b.example", want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := build(t, &maglevv3.Maglev{ConsistentHashingLbConfig: &commonv3.ConsistentHashingLbConfig{UseHostnameForHashing: tc.useHostname}}).NewPicker(hs)
			slot := xxhash.Sum64String(tc.firstKey) % DefaultTableSize
			if got := pickHash(p, slot); got != tc.want {
				t.Errorf("slot %d holds host %d, want %d", slot, got, tc.want)
			}
			// The hash is taken modulo the table size.
			if got := pickHash(p, slot+3*DefaultTableSize); got != tc.want {
				t.Errorf("hash slot+3*size picks host %d, want %d", got, tc.want)
			}
		})
	}
}

func TestConsistency(t *testing.T) {
	pol := build(t, &maglevv3.Maglev{})
	const n, keys = 10, 20000
	hs := weighted(1, 1, 1, 1, 1, 1, 1, 1, 1, 1)
	before := pol.NewPicker(hs)
	// The table depends on the hosts, not on their order.
	reversed := make([]lbpolicy.Host, n)
	for i := range hs {
		reversed[n-1-i] = hs[i]
	}
	rev := pol.NewPicker(reversed)
	after := pol.NewPicker(append(append([]lbpolicy.Host{}, hs[:3]...), hs[4:]...))
	moved := 0
	for k := range keys {
		h := xxhash.Sum64String(fmt.Sprint("key", k))
		b := pickHash(before, h)
		if pickHash(before, h) != b {
			t.Fatalf("key %d maps inconsistently", k)
		}
		if r := pickHash(rev, h); n-1-r != b {
			t.Fatalf("key %d: host %d, but %d with the hosts reversed", k, b, n-1-r)
		}
		a := pickHash(after, h)
		if a >= 3 {
			a++
		}
		if a != b {
			moved++
		}
	}
	// Host 3's tenth moves, plus Maglev's small disruption elsewhere.
	if frac := float64(moved) / keys; frac < 0.08 || frac > 0.15 {
		t.Errorf("removing 1 of %d hosts moved %.3f of the keys, want about %.2f", n, frac, 1.0/n)
	}
}

func TestNoHashIsRandom(t *testing.T) {
	p := build(t, &maglevv3.Maglev{}).NewPicker(weighted(1, 3))
	const picks = 100000
	got := make([]float64, 2)
	ctx := &lbpolicy.Context{}
	for range picks {
		got[p.Pick(ctx)]++
	}
	if share := got[1] / picks; math.Abs(share-0.75) > 0.01 {
		t.Errorf("host 1 share = %.3f, want 0.75 ± 0.01", share)
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *maglevv3.Maglev
		wantErr string
	}{
		{name: "empty", cfg: &maglevv3.Maglev{}},
		{name: "prime", cfg: &maglevv3.Maglev{TableSize: wrapperspb.UInt64(5000011)}},
		{name: "not prime", cfg: &maglevv3.Maglev{TableSize: wrapperspb.UInt64(65536)}, wantErr: "p.table_size: The table size of maglev must be prime number"},
		{name: "zero", cfg: &maglevv3.Maglev{TableSize: wrapperspb.UInt64(0)}, wantErr: "p.table_size: The table size of maglev must be prime number"},
		{name: "bounded load", cfg: &maglevv3.Maglev{ConsistentHashingLbConfig: &commonv3.ConsistentHashingLbConfig{HashBalanceFactor: wrapperspb.UInt32(150)}},
			wantErr: "p.consistent_hashing_lb_config.hash_balance_factor: not supported by herald yet"},
		{name: "locality weighted", cfg: &maglevv3.Maglev{LocalityWeightedLbConfig: &commonv3.LocalityLbConfig_LocalityWeightedLbConfig{}},
			wantErr: "p.locality_weighted_lb_config: not supported by herald yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.cfg, lbpolicy.BuildContext{Path: "p"})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Build: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Build error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestRegistered(t *testing.T) {
	e, ok := lbpolicy.Registry.ByTypeURL(registry.TypeURL(&maglevv3.Maglev{}))
	if !ok || e.Name != Name {
		t.Fatalf("maglev not registered under its type URL: %v %v", e, ok)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	p := build(t, &maglevv3.Maglev{}).NewPicker(weighted(1, 2, 3))
	hashed, unhashed := &lbpolicy.Context{Hash: 99, HasHash: true}, &lbpolicy.Context{}
	if n := testing.AllocsPerRun(100, func() { p.Pick(hashed); p.Pick(unhashed) }); n != 0 {
		t.Errorf("Pick allocates %v times", n)
	}
}

func BenchmarkPick(b *testing.B) {
	p := build(b, &maglevv3.Maglev{}).NewPicker(weighted(1, 2, 3, 4, 5, 6, 7, 8))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := &lbpolicy.Context{HasHash: true}
		for pb.Next() {
			ctx.Hash = ctx.Hash*6364136223846793005 + 1442695040888963407
			p.Pick(ctx)
		}
	})
}

// BenchmarkPickHosts is ns per pick with 10 and 1,000 hosts (table of
// 65537 entries).
func BenchmarkPickHosts(b *testing.B) {
	for _, n := range []int{10, 1000} {
		w := make([]uint32, n)
		for i := range w {
			w[i] = 1
		}
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			p := build(b, &maglevv3.Maglev{}).NewPicker(weighted(w...))
			ctx := &lbpolicy.Context{HasHash: true}
			b.ReportAllocs()
			for b.Loop() {
				ctx.Hash = ctx.Hash*6364136223846793005 + 1442695040888963407
				p.Pick(ctx)
			}
		})
	}
}
