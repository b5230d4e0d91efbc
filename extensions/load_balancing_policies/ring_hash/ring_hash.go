package ringhash

import (
	"math"
	"sort"
	"strconv"

	"github.com/cespare/xxhash/v2"
	ringhashv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/load_balancing_policies/ring_hash/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
)

// Name is the Envoy name of the policy.
const Name = "envoy.load_balancing_policies.ring_hash"

// Envoy's defaults for minimum_ring_size and maximum_ring_size
// (RingHashLoadBalancer::DefaultMinRingSize, DefaultMaxRingSize).
const (
	DefaultMinRingSize = 1024
	DefaultMaxRingSize = 8 * 1024 * 1024
)

func init() {
	lbpolicy.Register(lbpolicy.Extension[*ringhashv3.RingHash]{
		Name:   Name,
		Config: &ringhashv3.RingHash{},
		Build:  Build,
	})
}

// Build checks cfg. MURMUR_HASH_2, hash_balance_factor (bounded loads),
// consistent_hashing_lb_config.hash_policy and locality_weighted_lb_config
// are not implemented and rejected by name.
func Build(cfg *ringhashv3.RingHash, ctx lbpolicy.BuildContext) (lbpolicy.Policy, error) {
	errs := configerr.CheckFields(cfg, ctx.Path,
		"hash_function", "minimum_ring_size", "maximum_ring_size",
		"use_hostname_for_hashing", "consistent_hashing_lb_config")
	if cfg.GetHashFunction() == ringhashv3.RingHash_MURMUR_HASH_2 {
		errs = append(errs, configerr.At(ctx.Path+".hash_function", "MURMUR_HASH_2 is %s", configerr.NotSupported).
			WithHint("use XX_HASH, the default"))
	}
	p := &Policy{
		seed:        ctx.Seed,
		minRingSize: DefaultMinRingSize,
		maxRingSize: DefaultMaxRingSize,
		// Envoy: consistent_hashing_lb_config, when present, replaces the
		// deprecated top-level use_hostname_for_hashing.
		useHostname: cfg.GetUseHostnameForHashing(),
	}
	if ch := cfg.GetConsistentHashingLbConfig(); ch != nil {
		errs = append(errs, configerr.CheckFields(ch, ctx.Path+".consistent_hashing_lb_config", "use_hostname_for_hashing")...)
		p.useHostname = ch.GetUseHostnameForHashing()
	}
	if v := cfg.GetMinimumRingSize(); v != nil {
		p.minRingSize = v.GetValue()
	}
	if v := cfg.GetMaximumRingSize(); v != nil {
		p.maxRingSize = v.GetValue()
	}
	if p.minRingSize > p.maxRingSize {
		// Envoy's message (RingHashLoadBalancer constructor).
		errs = append(errs, configerr.At(ctx.Path+".minimum_ring_size",
			"ring hash: minimum_ring_size (%d) > maximum_ring_size (%d)", p.minRingSize, p.maxRingSize))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// Policy is a built ring hash policy. Immutable after Build.
type Policy struct {
	seed        uint64
	minRingSize uint64
	maxRingSize uint64
	useHostname bool
}

var _ lbpolicy.HashingPolicy = (*Policy)(nil)

// UsesHash implements lbpolicy.HashingPolicy: the router computes the
// route's hash_policy for this cluster.
func (p *Policy) UsesHash() bool { return true }

// NewPicker implements lbpolicy.Policy: it builds the ring as Envoy's
// RingHashLoadBalancer::Ring does. Host weights are normalised to sum to 1;
// the scale is chosen so that the lightest host gets a whole number of
// entries, at least minimum_ring_size entries in all and at most
// maximum_ring_size; host i's entries are xxHash64(key + "_" + n) for
// n = 0, 1, ..., its share taken from running sums so that fractional
// shares add up. Equal hashes keep host order (Envoy's std::sort leaves
// their order unspecified).
func (p *Policy) NewPicker(hosts []lbpolicy.Host) lbpolicy.Picker {
	var sum uint64
	for _, h := range hosts {
		sum += uint64(max(h.Weight(), 1))
	}
	weights := make([]float64, len(hosts))
	minW := 1.0
	for i, h := range hosts {
		weights[i] = float64(max(h.Weight(), 1)) * 1.0 / float64(sum)
		minW = min(minW, weights[i])
	}
	scale := min(math.Ceil(minW*float64(p.minRingSize))/minW, float64(p.maxRingSize))
	size := uint64(math.Ceil(scale))

	r := &ring{
		hashes: make([]uint64, 0, size),
		hosts:  make([]uint32, 0, size),
		rand:   lbpolicy.NewRand(p.seed),
	}
	var key []byte
	current, target := 0.0, 0.0
	for i, h := range hosts {
		key = append(key[:0], lbpolicy.HashKey(h, p.useHostname)...)
		key = append(key, '_')
		prefix := len(key)
		target += scale * weights[i]
		for n := uint64(0); current < target; n++ {
			key = strconv.AppendUint(key[:prefix], n, 10)
			r.hashes = append(r.hashes, xxhash.Sum64(key))
			r.hosts = append(r.hosts, uint32(i))
			current++
		}
	}
	sort.Stable(byHash{r})
	return r
}

// ring is the sorted ring: hashes[k] belongs to hosts[k].
type ring struct {
	hashes []uint64
	hosts  []uint32
	rand   *lbpolicy.Rand
}

type byHash struct{ r *ring }

func (b byHash) Len() int           { return len(b.r.hashes) }
func (b byHash) Less(i, j int) bool { return b.r.hashes[i] < b.r.hashes[j] }
func (b byHash) Swap(i, j int) {
	b.r.hashes[i], b.r.hashes[j] = b.r.hashes[j], b.r.hashes[i]
	b.r.hosts[i], b.r.hosts[j] = b.r.hosts[j], b.r.hosts[i]
}

// Pick implements lbpolicy.Picker. A request without a hash uses a random
// one (Envoy's ThreadAwareLoadBalancerBase::LoadBalancerImpl::chooseHost:
// "this effectively becomes the random LB"), so such requests spread by
// ring share, that is by weight.
func (r *ring) Pick(ctx *lbpolicy.Context) int {
	if len(r.hashes) == 0 {
		return -1
	}
	var h uint64
	if ctx != nil && ctx.HasHash {
		h = ctx.Hash
	} else {
		h = r.rand.Uint64()
	}
	return int(r.hosts[r.find(h)])
}

// find is Envoy's Ring::chooseHost, a port of ketama_get_server: the first
// entry whose hash is >= h, wrapping to entry 0 past the last. The search
// keeps Envoy's signed bounds so that the result matches entry for entry.
func (r *ring) find(h uint64) int {
	lowp, highp := int64(0), int64(len(r.hashes))
	for {
		midp := (lowp + highp) / 2
		if midp == int64(len(r.hashes)) {
			return 0
		}
		midval := r.hashes[midp]
		var midval1 uint64
		if midp > 0 {
			midval1 = r.hashes[midp-1]
		}
		if h <= midval && h > midval1 {
			return int(midp)
		}
		if midval < h {
			lowp = midp + 1
		} else {
			highp = midp - 1
		}
		if lowp > highp {
			return 0
		}
	}
}
