package snapshot

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/listener"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/secret"
	"github.com/herald-proxy/herald/internal/stats"
)

// Snapshot is one applied configuration. Immutable.
type Snapshot struct {
	Bootstrap *bootstrapv3.Bootstrap
	Listeners []*listener.Config
}

// Deps are the long-lived services extensions may reach at build time.
type Deps struct {
	Stats    *stats.Store
	Clusters any
	Server   any
	// Secrets resolves transport sockets' SDS secret references; nil
	// refuses them.
	Secrets *secret.Manager
}

// Build builds every static listener of b. Errors carry field paths; the
// caller positions them with the bootstrap's index.
func Build(b *bootstrapv3.Bootstrap, deps Deps) (*Snapshot, error) {
	snap := &Snapshot{Bootstrap: b}
	var errs configerr.List
	for i, l := range b.GetStaticResources().GetListeners() {
		path := fmt.Sprintf("static_resources.listeners[%d]", i)
		lc, err := BuildListener(l, path, deps)
		if err != nil {
			errs = append(errs, configerr.Collect(err, path, nil)...)
			continue
		}
		snap.Listeners = append(snap.Listeners, lc)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return snap, nil
}

// supportedListenerFields are the Listener fields herald interprets; any
// other set field is an error naming it, with the issue that will add it.
var supportedListenerFields = []string{
	"name", "address", "filter_chains", "default_filter_chain", "per_connection_buffer_limit_bytes",
	"traffic_direction", "metadata", "listener_filters", "listener_filters_timeout",
	"continue_on_listener_filters_timeout", "filter_chain_matcher",
	// udp_listener_config: QUIC listeners (HTTP/3), checked in buildQUIC.
	"udp_listener_config",
	// drain_type: a changed or removed listener drains whatever its value
	// (Envoy: MODIFY_ONLY drains "only in response to ... LDS
	// update/remove", DEFAULT also on /healthcheck/fail,
	// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/operations/draining);
	// herald does not drain on /healthcheck/fail yet, so both behave as
	// MODIFY_ONLY there.
	"drain_type",
	// use_original_dst: connections whose original destination (restored
	// by envoy.filters.listener.original_dst) is another listener's
	// address are handed to that listener (listener.Directory).
	"use_original_dst",
}

// supportedChainFields are the FilterChain fields herald interprets
// (filter_chain_match and transport_socket are checked for what they hold).
var supportedChainFields = []string{
	"filters", "filter_chain_match", "transport_socket", "name", "metadata", "transport_socket_connect_timeout",
}

var listenerIssues = map[string]string{}

// defaultListenerFiltersTimeout is Envoy's listener_filters_timeout
// default: "Default: 15s" (listener.proto).
const defaultListenerFiltersTimeout = 15 * time.Second

// BuildListener builds one listener.
func BuildListener(l *listenerv3.Listener, path string, deps Deps) (*listener.Config, error) {
	var errs configerr.List
	errs = append(errs, configerr.RejectUnlisted(l, path, listenerIssues, supportedListenerFields...)...)
	addr, err := socketAddress(l.GetAddress(), path+".address")
	if err != nil {
		errs = append(errs, err)
	}
	cfg := &listener.Config{
		Name:        l.GetName(),
		Network:     "tcp",
		Address:     addr,
		BufferLimit: 1 << 20,
		Inbound:     l.GetTrafficDirection() != corev3.TrafficDirection_OUTBOUND,
		// Envoy: use_original_dst defaults to false (listener.proto).
		UseOriginalDst: l.GetUseOriginalDst().GetValue(),
	}
	if v := l.GetPerConnectionBufferLimitBytes(); v != nil {
		cfg.BufferLimit = int(v.GetValue())
	}
	cfg.ListenerFiltersTimeout = defaultListenerFiltersTimeout
	if d := l.GetListenerFiltersTimeout(); d != nil {
		cfg.ListenerFiltersTimeout = d.AsDuration()
	}
	cfg.ContinueOnListenerFiltersTimeout = l.GetContinueOnListenerFiltersTimeout()
	lfs, lerrs := buildListenerFilters(l, path, deps)
	errs = append(errs, lerrs...)
	cfg.ListenerFilters = lfs
	var matches []listener.ChainMatch
	chainsOK := true
	// Envoy: with filter_chain_matcher "the filter chain match field is
	// ignored and should not be set", and "all filter chains in a listener
	// are uniquely named"
	// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/advanced/matching/matching_listener).
	unified := l.GetFilterChainMatcher() != nil
	names := map[string]int{}
	for j, fc := range l.GetFilterChains() {
		fpath := fmt.Sprintf("%s.filter_chains[%d]", path, j)
		if unified {
			if k, dup := names[fc.GetName()]; dup {
				errs = append(errs, configerr.At(fpath+".name", "filter_chain_matcher requires uniquely named filter chains (%q is also filter_chains[%d])", fc.GetName(), k))
				chainsOK = false
			} else if fc.GetName() == "" {
				errs = append(errs, configerr.At(fpath+".name", "filter_chain_matcher requires every filter chain to have a name"))
				chainsOK = false
			}
			names[fc.GetName()] = j
		}
		m, merrs := buildChainMatch(fc.GetFilterChainMatch(), fpath+".filter_chain_match")
		errs = append(errs, merrs...)
		for k := range j {
			if unified {
				break
			}
			if proto.Equal(orEmptyMatch(l.GetFilterChains()[k].GetFilterChainMatch()), orEmptyMatch(fc.GetFilterChainMatch())) {
				// Envoy: "filter chain '{}' has the same matching rules
				// defined as '{}'" (FilterChainManagerImpl::verifyNoDuplicateMatchers).
				errs = append(errs, configerr.At(fpath+".filter_chain_match", "filter chain %q has the same matching rules defined as %q (filter_chains[%d])",
					fc.GetName(), l.GetFilterChains()[k].GetName(), k))
				chainsOK = false
				break
			}
		}
		chain, err := buildChain(l, fc, fpath, deps)
		if err != nil || len(merrs) > 0 {
			errs = append(errs, configerr.Collect(err, fpath, nil)...)
			chainsOK = false
			continue
		}
		cfg.Chains = append(cfg.Chains, chain)
		matches = append(matches, m)
	}
	if dfc := l.GetDefaultFilterChain(); dfc != nil {
		chain, err := buildChain(l, dfc, path+".default_filter_chain", deps)
		if err != nil {
			errs = append(errs, configerr.Collect(err, path+".default_filter_chain", nil)...)
		} else {
			cfg.Default = chain
		}
	}
	if len(l.GetFilterChains()) == 0 && l.GetDefaultFilterChain() == nil {
		errs = append(errs, configerr.At(path+".filter_chains", "a listener needs at least one filter chain"))
	}
	if unified && chainsOK && len(errs) == 0 {
		m, err := listener.BuildFilterChainMatcher(l.GetFilterChainMatcher(), cfg.Chains, cfg.Default, path+".filter_chain_matcher")
		errs = append(errs, configerr.Collect(err, "", nil)...)
		cfg.FilterChainMatcher = m
	}
	if !unified && chainsOK && len(errs) == 0 {
		m, err := listener.NewChainMatcher(cfg.Chains, matches, cfg.Default)
		var oe *listener.OverlapError
		if errors.As(err, &oe) {
			errs = append(errs, configerr.At(fmt.Sprintf("%s.filter_chains[%d].filter_chain_match", path, oe.Index), "%v", err))
		}
		cfg.Matcher = m
	}
	errs = append(errs, buildQUIC(l, cfg, path)...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return cfg, nil
}

func buildChain(l *listenerv3.Listener, fc *listenerv3.FilterChain, path string, deps Deps) (*listener.FilterChain, error) {
	errs := configerr.RejectUnlisted(fc, path, nil, supportedChainFields...)
	chain := &listener.FilterChain{Name: fc.GetName()}
	if d := fc.GetTransportSocketConnectTimeout(); d != nil {
		chain.TransportSocketConnectTimeout = d.AsDuration()
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		t, terr := buildDownstreamTransport(ts, path+".transport_socket", deps)
		errs = append(errs, terr...)
		chain.Transport = t
	}
	filters := fc.GetFilters()
	if len(filters) == 0 {
		errs = append(errs, configerr.At(path+".filters", "a filter chain needs a terminal filter (envoy.filters.network.http_connection_manager or envoy.filters.network.tcp_proxy)"))
	}
	for k, f := range filters {
		fpath := fmt.Sprintf("%s.filters[%d]", path, k)
		entry, cfg, ferr := registry.Resolve(netfilter.Registry, func(e *netfilter.Entry) proto.Message { return e.NewConfig() },
			f.GetName(), f.GetTypedConfig(), fpath)
		if ferr != nil {
			errs = append(errs, ferr)
			continue
		}
		built, err := entry.Build(cfg, netfilter.BuildContext{
			Path:         fpath + ".typed_config",
			ListenerName: l.GetName(),
			Stats:        deps.Stats,
			Clusters:     deps.Clusters,
			Server:       deps.Server,
		})
		if err != nil {
			errs = append(errs, configerr.Collect(err, fpath+".typed_config", nil)...)
			continue
		}
		last := k == len(filters)-1
		switch {
		case entry.Terminal && !last:
			errs = append(errs, configerr.At(fpath, "terminal filter %s must be the last filter of its chain", entry.Name))
		case !entry.Terminal && last:
			errs = append(errs, configerr.At(fpath, "the last filter of a chain must be terminal (http_connection_manager or tcp_proxy), not %s", entry.Name))
		case entry.Terminal:
			t, ok := built.(netfilter.Terminal)
			if !ok {
				errs = append(errs, configerr.At(fpath, "%s does not implement a terminal filter", entry.Name))
				continue
			}
			chain.Terminal = t
		default:
			cf, ok := built.(netfilter.ConnectionFilter)
			if !ok {
				errs = append(errs, configerr.At(fpath, "%s does not implement a connection filter", entry.Name))
				continue
			}
			chain.Filters = append(chain.Filters, cf)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return chain, nil
}

// socketAddress turns an Envoy Address into "host:port".
func socketAddress(a *corev3.Address, path string) (string, *configerr.FieldError) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", configerr.At(path, "only socket_address is supported by herald")
	}
	if sa.GetNamedPort() != "" {
		return "", configerr.At(path+".socket_address.named_port", "named_port is not supported; use port_value")
	}
	return net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))), nil
}
