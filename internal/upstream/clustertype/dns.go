package clustertype

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Family is a DNS lookup family (Envoy's Cluster.DnsLookupFamily).
type Family int

// Lookup families, as Envoy documents them
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/cluster.proto#enum-config-cluster-v3-cluster-dnslookupfamily).
const (
	// Auto prefers IPv6: IPv6 addresses when there are any, else IPv4.
	Auto Family = iota
	// V4Only uses IPv4 addresses only.
	V4Only
	// V6Only uses IPv6 addresses only.
	V6Only
	// V4Preferred prefers IPv4: IPv4 addresses when there are any, else IPv6.
	V4Preferred
	// All uses every address of both families.
	All
)

// Default DNS settings.
const (
	// DefaultRefreshRate is Envoy's dns_refresh_rate default: "If this
	// setting is not specified, the value defaults to 5000ms."
	DefaultRefreshRate = 5 * time.Second
)

// DNSConfig is the checked DNS part of a cluster, shared by STRICT_DNS and
// LOGICAL_DNS.
type DNSConfig struct {
	// RefreshRate is dns_refresh_rate (default 5 s).
	RefreshRate time.Duration
	// FailureBase and FailureMax are dns_failure_refresh_rate; zero means
	// "use RefreshRate" (Envoy: "If this setting is not specified, the
	// failure refresh rate defaults to the DNS refresh rate").
	FailureBase, FailureMax time.Duration
	// Jitter is dns_jitter: each refresh is delayed by a random amount in
	// [0, Jitter). Zero means none.
	Jitter time.Duration
	// Family is dns_lookup_family. Envoy's default is AUTO (cluster.proto:
	// "If this setting is not specified, the value defaults to AUTO").
	Family Family
}

// ParseDNSConfig checks the DNS fields of the legacy Cluster message.
// respect_dns_ttl needs record TTLs, which Go's resolver does not report, and
// custom resolvers are not implemented: both are errors.
func ParseDNSConfig(c *clusterv3.Cluster, path string) (DNSConfig, error) {
	cfg := DNSConfig{RefreshRate: DefaultRefreshRate}
	var errs configerr.List
	if d := c.GetDnsRefreshRate(); d != nil {
		cfg.RefreshRate = d.AsDuration()
		if cfg.RefreshRate < time.Millisecond {
			errs = append(errs, configerr.At(path+".dns_refresh_rate", "must be at least 1ms"))
		}
	}
	if fr := c.GetDnsFailureRefreshRate(); fr != nil {
		cfg.FailureBase = fr.GetBaseInterval().AsDuration()
		cfg.FailureMax = fr.GetMaxInterval().AsDuration()
		if cfg.FailureMax == 0 {
			cfg.FailureMax = 10 * cfg.FailureBase // Envoy: max_interval defaults to 10 times base_interval.
		}
		if cfg.FailureBase <= 0 || cfg.FailureMax < cfg.FailureBase {
			errs = append(errs, configerr.At(path+".dns_failure_refresh_rate", "base_interval must be positive and not above max_interval"))
		}
	}
	if d := c.GetDnsJitter(); d != nil {
		cfg.Jitter = d.AsDuration()
	}
	if c.GetRespectDnsTtl() {
		errs = append(errs, configerr.At(path+".respect_dns_ttl", "%s (Go's resolver does not report TTLs)", configerr.NotSupported))
	}
	for _, f := range []struct {
		set  bool
		name string
	}{
		{len(c.GetDnsResolvers()) > 0, "dns_resolvers"},
		{c.GetUseTcpForDnsLookups(), "use_tcp_for_dns_lookups"},
		{c.GetDnsResolutionConfig() != nil, "dns_resolution_config"},
		{c.GetTypedDnsResolverConfig() != nil, "typed_dns_resolver_config"},
	} {
		if f.set {
			errs = append(errs, configerr.At(path+"."+f.name, "%s (herald uses the system resolver)", configerr.NotSupported))
		}
	}
	switch c.GetDnsLookupFamily() {
	case clusterv3.Cluster_AUTO:
		cfg.Family = Auto
	case clusterv3.Cluster_V4_ONLY:
		cfg.Family = V4Only
	case clusterv3.Cluster_V6_ONLY:
		cfg.Family = V6Only
	case clusterv3.Cluster_V4_PREFERRED:
		cfg.Family = V4Preferred
	case clusterv3.Cluster_ALL:
		cfg.Family = All
	default:
		errs = append(errs, configerr.At(path+".dns_lookup_family", "unknown value %d", c.GetDnsLookupFamily()))
	}
	if err := errs.Err(); err != nil {
		return DNSConfig{}, err
	}
	return cfg, nil
}

// ErrNoAddresses is returned when a name resolves to no address of the
// configured family.
var ErrNoAddresses = errors.New("no addresses of the configured family")

// Lookup resolves host and applies the lookup family. IP literals come back
// as themselves. Addresses are unmapped (::ffff:1.2.3.4 → 1.2.3.4).
func (cfg DNSConfig) Lookup(ctx context.Context, r Resolver, host string) ([]netip.Addr, error) {
	network := "ip"
	switch cfg.Family {
	case V4Only:
		network = "ip4"
	case V6Only:
		network = "ip6"
	}
	addrs, err := r.LookupNetIP(ctx, network, host)
	if err != nil {
		return nil, err
	}
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a)
		}
	}
	var out []netip.Addr
	switch cfg.Family {
	case V4Only:
		out = v4
	case V6Only:
		out = v6
	case Auto:
		if out = v6; len(out) == 0 {
			out = v4
		}
	case V4Preferred:
		if out = v4; len(out) == 0 {
			out = v6
		}
	case All:
		out = append(v4, v6...)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolve %q: %w", host, ErrNoAddresses)
	}
	return out, nil
}

// Refresh runs resolve until ctx is done: at once, then again after
// RefreshRate on success, or after the failure backoff (FailureBase doubling
// up to FailureMax, or RefreshRate when unset) on failure, each wait plus a
// random jitter below Jitter. resolve reports whether it succeeded.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/service_discovery#strict-dns
func (cfg DNSConfig) Refresh(ctx context.Context, rnd func() uint64, resolve func(ctx context.Context) bool) {
	failures := 0
	for {
		if ctx.Err() != nil {
			return
		}
		wait := cfg.RefreshRate
		if resolve(ctx) {
			failures = 0
		} else {
			failures++
			if cfg.FailureBase > 0 {
				wait = cfg.FailureBase
				for i := 1; i < failures && wait < cfg.FailureMax; i++ {
					wait *= 2
				}
				wait = min(wait, cfg.FailureMax)
			}
		}
		if cfg.Jitter > 0 && rnd != nil {
			wait += time.Duration(rnd() % uint64(cfg.Jitter))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
