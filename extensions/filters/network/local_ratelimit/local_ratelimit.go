package localratelimit

import (
	"time"

	lrlnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/local_ratelimit/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/tokenbucket"
)

func init() {
	netfilter.Register(netfilter.Extension[*lrlnetv3.LocalRateLimit]{
		Name:   Name,
		Config: &lrlnetv3.LocalRateLimit{},
		Build:  Build,
	})
}

const (
	// Name is the filter's Envoy name.
	Name = "envoy.filters.network.local_ratelimit"
	// minFillInterval is Envoy's LocalRateLimiterImpl check: "local rate
	// limit token bucket fill timer must be >= 50ms".
	minFillInterval = 50 * time.Millisecond
)

var supported = []string{"stat_prefix", "token_bucket", "runtime_enabled"}

var unsupportedIssues = map[string]string{"share_key": "#5"}

// Filter is a built network local rate limit. Immutable after Build but
// for the bucket's atomic state.
type Filter struct {
	bucket  *tokenbucket.Bucket
	enabled bool
	// rateLimited is local_rate_limit.<stat_prefix>.rate_limited.
	rateLimited *stats.Counter
	now         func() int64 // tokenbucket.Now; tests inject a clock
}

var _ netfilter.ConnectionFilter = (*Filter)(nil)

// Build interprets a LocalRateLimit once per snapshot. Each filter (each
// filter chain's copy) has its own bucket, starting full, as in Envoy.
func Build(cfg *lrlnetv3.LocalRateLimit, ctx netfilter.BuildContext) (netfilter.Filter, error) {
	errs := configerr.RejectUnlisted(cfg, ctx.Path, unsupportedIssues, supported...)
	if cfg.GetStatPrefix() == "" {
		errs = append(errs, configerr.At(ctx.Path+".stat_prefix", "stat_prefix is required"))
	}
	tb := cfg.GetTokenBucket()
	if tb == nil {
		errs = append(errs, configerr.At(ctx.Path+".token_bucket", "token_bucket is required"))
	} else {
		errs = append(errs, configerr.RejectUnlisted(tb, ctx.Path+".token_bucket", nil, "max_tokens", "tokens_per_fill", "fill_interval")...)
		if tb.GetMaxTokens() == 0 {
			errs = append(errs, configerr.At(ctx.Path+".token_bucket.max_tokens", "value must be greater than 0"))
		}
		if tb.GetFillInterval().AsDuration() < minFillInterval {
			errs = append(errs, configerr.At(ctx.Path+".token_bucket.fill_interval", "local rate limit token bucket fill timer must be >= 50ms"))
		}
	}
	// Envoy: runtime_enabled is a RuntimeFeatureFlag; herald has no
	// runtime layer, so its default_value decides (what Envoy uses while
	// runtime_key is unset). Without the field the filter is enabled.
	f := &Filter{enabled: true, now: tokenbucket.Now}
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
	perFill := uint32(1) // Envoy: tokens_per_fill defaults to 1
	if v := tb.GetTokensPerFill(); v != nil {
		perFill = v.GetValue()
	}
	f.bucket = tokenbucket.New(tb.GetMaxTokens(), perFill, tb.GetFillInterval().AsDuration(), f.now())
	// Envoy's generateStats: "local_rate_limit." + stat_prefix, joined to
	// the stat name by statPrefixJoin. (The docs page says
	// local_ratelimit.<stat_prefix>.; the code and its integration test
	// say local_rate_limit.)
	f.rateLimited = ctx.Stats.Counter(stats.JoinPrefix("local_rate_limit."+cfg.GetStatPrefix(), "rate_limited"))
	return f, nil
}

// OnNewConnection implements netfilter.ConnectionFilter: Envoy's
// Filter::onNewConnection. A connection takes one token; without one it
// is closed and counted.
func (f *Filter) OnNewConnection(*network.Conn) bool {
	if !f.enabled {
		return true
	}
	if f.bucket.Consume(f.now()) {
		return true
	}
	f.rateLimited.Inc()
	return false
}
