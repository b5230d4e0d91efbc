package connectionlimit

import (
	"sync/atomic"
	"time"

	climitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/connection_limit/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

func init() {
	netfilter.Register(netfilter.Extension[*climitv3.ConnectionLimit]{
		Name:   Name,
		Config: &climitv3.ConnectionLimit{},
		Build:  Build,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.network.connection_limit"

var supported = []string{"stat_prefix", "max_connections", "delay", "runtime_enabled"}

// Filter is a built connection limit. Immutable after Build but for the
// connection count.
type Filter struct {
	max     uint64
	delay   time.Duration
	enabled bool
	// connections is Envoy's Config::connections_: open connections of
	// the chain, the refused ones included until they close.
	connections atomic.Uint64
	// connection_limit.<stat_prefix>.limited_connections and
	// .active_connections.
	limited *stats.Counter
	active  *stats.Gauge
	// onClose is f.closed, bound once: a method value made per connection
	// would allocate.
	onClose func()
}

var _ netfilter.ConnectionFilter = (*Filter)(nil)

// Build interprets a ConnectionLimit once per snapshot.
func Build(cfg *climitv3.ConnectionLimit, ctx netfilter.BuildContext) (netfilter.Filter, error) {
	errs := configerr.RejectUnlisted(cfg, ctx.Path, nil, supported...)
	if cfg.GetStatPrefix() == "" {
		errs = append(errs, configerr.At(ctx.Path+".stat_prefix", "stat_prefix is required"))
	}
	if cfg.GetMaxConnections().GetValue() < 1 {
		errs = append(errs, configerr.At(ctx.Path+".max_connections", "max_connections is required and must be at least 1"))
	}
	f := &Filter{max: cfg.GetMaxConnections().GetValue(), delay: cfg.GetDelay().AsDuration(), enabled: true}
	// Envoy: runtime_enabled is a RuntimeFeatureFlag; herald has no
	// runtime layer, so default_value decides.
	if re := cfg.GetRuntimeEnabled(); re != nil {
		errs = append(errs, configerr.RejectUnlisted(re, ctx.Path+".runtime_enabled", nil, "default_value", "runtime_key")...)
		if re.GetDefaultValue() == nil {
			errs = append(errs, configerr.At(ctx.Path+".runtime_enabled.default_value", "default_value is required"))
		}
		f.enabled = re.GetDefaultValue().GetValue()
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	// Envoy's generateStats: "connection_limit." + stat_prefix, joined to
	// each name by statPrefixJoin.
	base := "connection_limit." + cfg.GetStatPrefix()
	f.limited = ctx.Stats.Counter(stats.JoinPrefix(base, "limited_connections"))
	f.active = ctx.Stats.Gauge(stats.JoinPrefix(base, "active_connections"))
	f.onClose = f.closed
	return f, nil
}

// within takes one connection slot when fewer than max are taken
// (Envoy's incrementConnectionWithinLimit).
func (f *Filter) within() bool {
	for {
		n := f.connections.Load()
		if n >= f.max {
			return false
		}
		if f.connections.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// OnNewConnection implements netfilter.ConnectionFilter: Envoy's
// Filter::onNewConnection. Every connection counts as active until it
// closes; one over max_connections is counted as limited and closed, after
// delay when set (Envoy holds it open without reading, "a better DoS
// protection").
func (f *Filter) OnNewConnection(c *network.Conn) bool {
	if !f.enabled {
		return true
	}
	f.active.Inc()
	ok := f.within()
	if !ok {
		f.connections.Add(1) // Envoy's incrementConnection: the close decrements it
	}
	c.OnClose(f.onClose)
	if ok {
		return true
	}
	f.limited.Inc()
	if f.delay > 0 {
		t := time.NewTimer(f.delay)
		select {
		case <-t.C:
		case <-c.Ctx.Done():
			t.Stop()
		}
	}
	return false
}

// closed is Envoy's onEvent(LocalClose|RemoteClose).
func (f *Filter) closed() {
	f.connections.Add(^uint64(0))
	f.active.Dec()
}
