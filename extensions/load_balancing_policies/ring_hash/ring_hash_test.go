package ringhash

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	commonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/common/v3"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"
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

// hostsN makes n hosts 10.0.0.i:80 of weight 1.
func hostsN(n int) []lbpolicy.Host {
	out := make([]lbpolicy.Host, n)
	for i := range out {
		out[i] = host{w: 1, addr: fmt.Sprintf("10.0.0.%d:80", i+1)}
	}
	return out
}

func build(t testing.TB, cfg *ringhashv3.RingHash) *Policy {
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

func TestRingLayout(t *testing.T) {
	tests := []struct {
		name      string
		cfg       *ringhashv3.RingHash
		weights   []uint32
		wantSize  int
		wantPerHs []int
	}{
		// Envoy's own example (ring_hash_lb.cc): 4 equal hosts and a
		// maximum of 6 give 1.5 entries a host, laid out 2, 1, 2, 1.
		{name: "fractional shares", cfg: &ringhashv3.RingHash{MinimumRingSize: wrapperspb.UInt64(6), MaximumRingSize: wrapperspb.UInt64(6)},
			weights: []uint32{1, 1, 1, 1}, wantSize: 6, wantPerHs: []int{2, 1, 2, 1}},
		// Defaults: the lightest host gets ceil(w_min * 1024) entries.
		{name: "default equal", cfg: &ringhashv3.RingHash{}, weights: []uint32{1, 1, 1}, wantSize: 1026, wantPerHs: []int{342, 342, 342}},
		{name: "weighted", cfg: &ringhashv3.RingHash{}, weights: []uint32{1, 3}, wantSize: 1024, wantPerHs: []int{256, 768}},
		// The lightest host's whole entries would need 2*1001 = 2002 entries;
		// maximum_ring_size scales that down to 2000. The running target
		// sums in float64 end a hair above 2000, so one more entry is made,
		// exactly as Envoy's identical double arithmetic does.
		{name: "maximum caps", cfg: &ringhashv3.RingHash{MinimumRingSize: wrapperspb.UInt64(1024), MaximumRingSize: wrapperspb.UInt64(2000)},
			weights: []uint32{1, 1000}, wantSize: 2001, wantPerHs: []int{2, 1999}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hs := make([]lbpolicy.Host, len(tc.weights))
			for i, w := range tc.weights {
				hs[i] = host{w: w, addr: fmt.Sprintf("10.0.0.%d:80", i+1)}
			}
			r := build(t, tc.cfg).NewPicker(hs).(*ring)
			if len(r.hashes) != tc.wantSize {
				t.Errorf("ring size = %d, want %d", len(r.hashes), tc.wantSize)
			}
			per := make([]int, len(hs))
			for _, h := range r.hosts {
				per[h]++
			}
			if fmt.Sprint(per) != fmt.Sprint(tc.wantPerHs) {
				t.Errorf("entries per host = %v, want %v", per, tc.wantPerHs)
			}
			for i := 1; i < len(r.hashes); i++ {
				if r.hashes[i-1] > r.hashes[i] {
					t.Fatalf("ring not sorted at %d", i)
				}
			}
		})
	}
}

func TestEnvoyHashKeys(t *testing.T) {
	hs := []lbpolicy.Host{
		host{w: 1, addr: "10.0.0.1:80", hostname: "a.example"},
		host{w: 1, addr: "[2001:db8::2]:80", hostname: "b.example"},
	}
	tests := []struct {
		name        string
		useHostname bool
		key         string
		want        int
	}{
		// A request hashing exactly to an entry's hash lands on it; the
		// entries are xxHash64("<address>_<n>"), Envoy's key format.
		{name: "address entry 0", key: "10.0.0.1:80_0", want: 0},
		{name: "address entry 7", key: "10.0.0.1:80_7", want: 0},
		{name: "ipv6 address", key: "[2001:db8::2]:80_3", want: 1},
		{name: "hostname", useHostname: true, key: "b.example_5", want: 1},
		{name: "hostname 2", useHostname: true, key: "a.example_511", want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &ringhashv3.RingHash{ConsistentHashingLbConfig: &commonv3.ConsistentHashingLbConfig{UseHostnameForHashing: tc.useHostname}}
			p := build(t, cfg).NewPicker(hs)
			if got := pickHash(p, xxhash.Sum64String(tc.key)); got != tc.want {
				t.Errorf("hash of %q picks host %d, want %d", tc.key, got, tc.want)
			}
		})
	}
}

func TestFindWraps(t *testing.T) {
	r := &ring{hashes: []uint64{10, 20, 30}, hosts: []uint32{0, 1, 2}}
	tests := []struct {
		h    uint64
		want int
	}{
		{h: 0, want: 0}, {h: 10, want: 0}, {h: 11, want: 1}, {h: 20, want: 1},
		{h: 25, want: 2}, {h: 30, want: 2}, {h: 31, want: 0}, {h: math.MaxUint64, want: 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.h), func(t *testing.T) {
			if got := r.find(tc.h); got != tc.want {
				t.Errorf("find(%d) = %d, want %d", tc.h, got, tc.want)
			}
		})
	}
}

func TestConsistency(t *testing.T) {
	pol := build(t, &ringhashv3.RingHash{})
	const n, keys = 10, 20000
	hs := hostsN(n)
	before := pol.NewPicker(hs)
	again := pol.NewPicker(hs)
	// Remove host 4.
	after := pol.NewPicker(append(append([]lbpolicy.Host{}, hs[:4]...), hs[5:]...))
	moved := 0
	for k := range keys {
		h := xxhash.Sum64String(fmt.Sprint("key", k))
		b := pickHash(before, h)
		if pickHash(again, h) != b || pickHash(before, h) != b {
			t.Fatalf("key %d maps inconsistently", k)
		}
		a := pickHash(after, h)
		if a >= 4 {
			a++ // index in the original host list
		}
		if a != b {
			moved++
		}
	}
	// Ideal: only host 4's ~1/10 of the keys move. The ring is rebuilt
	// with ~11% more entries per host, which moves a few more.
	if frac := float64(moved) / keys; frac < 0.07 || frac > 0.16 {
		t.Errorf("removing 1 of %d hosts moved %.3f of the keys, want about %.2f", n, frac, 1.0/n)
	}
}

func TestDistribution(t *testing.T) {
	// Requests without a hash get a random one: shares follow ring shares.
	hs := []lbpolicy.Host{host{w: 1, addr: "10.0.0.1:80"}, host{w: 2, addr: "10.0.0.2:80"}, host{w: 3, addr: "10.0.0.3:80"}}
	p := build(t, &ringhashv3.RingHash{}).NewPicker(hs)
	const picks = 100000
	got := make([]float64, 3)
	for range picks {
		got[p.Pick(&lbpolicy.Context{})]++
	}
	for i, w := range []float64{1, 2, 3} {
		if share := got[i] / picks; math.Abs(share-w/6) > 0.04 {
			t.Errorf("host %d share = %.3f, want %.3f ± 0.04", i, share, w/6)
		}
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *ringhashv3.RingHash
		wantErr string
	}{
		{name: "empty", cfg: &ringhashv3.RingHash{}},
		{name: "supported", cfg: &ringhashv3.RingHash{HashFunction: ringhashv3.RingHash_XX_HASH, MinimumRingSize: wrapperspb.UInt64(10), MaximumRingSize: wrapperspb.UInt64(10),
			UseHostnameForHashing: true, ConsistentHashingLbConfig: &commonv3.ConsistentHashingLbConfig{UseHostnameForHashing: true}}},
		{name: "murmur", cfg: &ringhashv3.RingHash{HashFunction: ringhashv3.RingHash_MURMUR_HASH_2}, wantErr: "p.hash_function: MURMUR_HASH_2 is not supported by herald yet"},
		{name: "min above max", cfg: &ringhashv3.RingHash{MinimumRingSize: wrapperspb.UInt64(2048), MaximumRingSize: wrapperspb.UInt64(1024)},
			wantErr: "p.minimum_ring_size: ring hash: minimum_ring_size (2048) > maximum_ring_size (1024)"},
		{name: "min above default max", cfg: &ringhashv3.RingHash{MaximumRingSize: wrapperspb.UInt64(100)}, wantErr: "minimum_ring_size (1024) > maximum_ring_size (100)"},
		{name: "hash_balance_factor", cfg: &ringhashv3.RingHash{HashBalanceFactor: wrapperspb.UInt32(150)}, wantErr: "p.hash_balance_factor: not supported by herald yet"},
		{name: "bounded load", cfg: &ringhashv3.RingHash{ConsistentHashingLbConfig: &commonv3.ConsistentHashingLbConfig{HashBalanceFactor: wrapperspb.UInt32(150)}},
			wantErr: "p.consistent_hashing_lb_config.hash_balance_factor: not supported by herald yet"},
		{name: "locality weighted", cfg: &ringhashv3.RingHash{LocalityWeightedLbConfig: &commonv3.LocalityLbConfig_LocalityWeightedLbConfig{}},
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
	e, ok := lbpolicy.Registry.ByTypeURL(registry.TypeURL(&ringhashv3.RingHash{}))
	if !ok || e.Name != Name {
		t.Fatalf("ring hash not registered under its type URL: %v %v", e, ok)
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	p := build(t, &ringhashv3.RingHash{}).NewPicker(hostsN(5))
	hashed, unhashed := &lbpolicy.Context{Hash: 12345, HasHash: true}, &lbpolicy.Context{}
	if n := testing.AllocsPerRun(100, func() { p.Pick(hashed); p.Pick(unhashed) }); n != 0 {
		t.Errorf("Pick allocates %v times", n)
	}
}

func BenchmarkPick(b *testing.B) {
	p := build(b, &ringhashv3.RingHash{}).NewPicker(hostsN(50))
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

// BenchmarkPickHosts is ns per pick with 10 and 1,000 hosts (ring of
// Envoy's default minimum size, 1024 entries, or more).
func BenchmarkPickHosts(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("hosts=%d", n), func(b *testing.B) {
			p := build(b, &ringhashv3.RingHash{}).NewPicker(hostsN(n))
			ctx := &lbpolicy.Context{HasHash: true}
			b.ReportAllocs()
			for b.Loop() {
				ctx.Hash = ctx.Hash*6364136223846793005 + 1442695040888963407
				p.Pick(ctx)
			}
		})
	}
}
