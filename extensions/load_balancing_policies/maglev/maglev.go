package maglev

import (
	"math/big"
	"sort"

	"github.com/cespare/xxhash/v2"
	maglevv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/maglev/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// Name is the Envoy name of the policy.
const Name = "envoy.load_balancing_policies.maglev"

// DefaultTableSize is Envoy's default table_size (MaglevTable::DefaultTableSize).
const DefaultTableSize = 65537

func init() {
	lbpolicy.Register(lbpolicy.Extension[*maglevv3.Maglev]{
		Name:   Name,
		Config: &maglevv3.Maglev{},
		Build:  Build,
	})
}

// Build checks cfg. hash_balance_factor (bounded loads),
// consistent_hashing_lb_config.hash_policy and locality_weighted_lb_config
// are not implemented and rejected by name.
func Build(cfg *maglevv3.Maglev, ctx lbpolicy.BuildContext) (lbpolicy.Policy, error) {
	errs := configerr.CheckFields(cfg, ctx.Path, "table_size", "consistent_hashing_lb_config")
	p := &Policy{seed: ctx.Seed, tableSize: DefaultTableSize}
	if ch := cfg.GetConsistentHashingLbConfig(); ch != nil {
		errs = append(errs, configerr.CheckFields(ch, ctx.Path+".consistent_hashing_lb_config", "use_hostname_for_hashing")...)
		p.useHostname = ch.GetUseHostnameForHashing()
	}
	if v := cfg.GetTableSize(); v != nil {
		p.tableSize = v.GetValue()
	}
	// The proto bounds table_size by 5000011; the loader checked that.
	// Envoy's message (MaglevLoadBalancer constructor).
	if !big.NewInt(0).SetUint64(p.tableSize).ProbablyPrime(0) {
		errs = append(errs, configerr.At(ctx.Path+".table_size", "The table size of maglev must be prime number"))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// Policy is a built maglev policy. Immutable after Build.
type Policy struct {
	seed        uint64
	tableSize   uint64
	useHostname bool
}

var _ lbpolicy.HashingPolicy = (*Policy)(nil)

// UsesHash implements lbpolicy.HashingPolicy: the router computes the
// route's hash_policy for this cluster.
func (p *Policy) UsesHash() bool { return true }

// buildEntry is Envoy's TableBuildEntry.
type buildEntry struct {
	host   uint32
	key    string
	offset uint64
	skip   uint64
	weight float64
	target float64
	next   uint64
}

// NewPicker implements lbpolicy.Policy: it fills the table as Envoy's
// OriginalMaglevTable::constructImplementationInternals does (pseudocode
// listing 1 of the Maglev paper, with weights). Hosts are sorted by their
// hash key; host i's permutation is offset_i + skip_i*n (mod table_size)
// with offset = xxHash64(key, seed 0) % table_size and
// skip = xxHash64(key, seed 1) % (table_size-1) + 1. Rounds go over the
// hosts in order; a host whose normalised weight w has not caught up with
// its target (iteration*w < target) sits the round out, else it takes the
// next free slot of its permutation and its target grows by the largest
// normalised weight.
func (p *Policy) NewPicker(hosts []lbpolicy.Host) lbpolicy.Picker {
	size := p.tableSize
	var sum uint64
	for _, h := range hosts {
		sum += uint64(max(h.Weight(), 1))
	}
	entries := make([]buildEntry, len(hosts))
	maxW := 0.0
	for i, h := range hosts {
		key := lbpolicy.HashKey(h, p.useHostname)
		w := float64(max(h.Weight(), 1)) * 1.0 / float64(sum)
		maxW = max(maxW, w)
		entries[i] = buildEntry{
			host:   uint32(i),
			key:    key,
			offset: xxhash.Sum64String(key) % size,
			skip:   xxhashSeed1(key)%(size-1) + 1,
			weight: w,
		}
	}
	// Envoy sorts (key, host, weight) tuples so that the table does not
	// depend on discovery order; equal keys keep host order here.
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].key < entries[j].key })

	t := &table{slots: make([]uint32, size), rand: lbpolicy.NewRand(p.seed)}
	const empty = ^uint32(0)
	for i := range t.slots {
		t.slots[i] = empty
	}
	var filled uint64
	for iteration := uint32(1); filled < size; iteration++ {
		for i := 0; i < len(entries) && filled < size; i++ {
			e := &entries[i]
			if float64(iteration)*e.weight < e.target {
				continue
			}
			e.target += maxW
			c := (e.offset + e.skip*e.next) % size
			for t.slots[c] != empty {
				e.next++
				c = (e.offset + e.skip*e.next) % size
			}
			t.slots[c] = e.host
			e.next++
			filled++
		}
	}
	return t
}

// xxhashSeed1 is XXH64(key, seed 1), the skip hash Envoy uses.
func xxhashSeed1(key string) uint64 {
	d := xxhash.NewWithSeed(1)
	_, _ = d.WriteString(key)
	return d.Sum64()
}

// table is the filled lookup table: slots[k] is a host index.
type table struct {
	slots []uint32
	rand  *lbpolicy.Rand
}

// Pick implements lbpolicy.Picker: table[hash % table_size]
// (OriginalMaglevTable::chooseHost). A request without a hash uses a random
// one, as Envoy's ThreadAwareLoadBalancerBase does.
func (t *table) Pick(ctx *lbpolicy.Context) int {
	var h uint64
	if ctx != nil && ctx.HasHash {
		h = ctx.Hash
	} else {
		h = t.rand.Uint64()
	}
	return int(t.slots[h%uint64(len(t.slots))])
}
