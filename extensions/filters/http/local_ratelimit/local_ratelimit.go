package localratelimit

import (
	"strconv"
	"sync"
	"time"

	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/fractional"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/headeroption"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
	"github.com/herald-proxy/herald/internal/tokenbucket"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*lrlv3.LocalRateLimit]{
		Name:          Name,
		Config:        &lrlv3.LocalRateLimit{},
		PerRoute:      &lrlv3.LocalRateLimit{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

// Envoy's strings (local_ratelimit.cc).
const (
	// Name is the filter's Envoy name.
	Name = "envoy.filters.http.local_ratelimit"
	// Details is the response_code_details and the body of a rate-limited
	// reply.
	Details = "local_rate_limited"

	headerLimit     = "x-ratelimit-limit"
	headerRemaining = "x-ratelimit-remaining"
	headerReset     = "x-ratelimit-reset"
	headerRetry     = "retry-after"

	// minFillInterval: "local rate limit token bucket fill timer must be >= 50ms".
	minFillInterval = 50 * time.Millisecond
)

// supported are the LocalRateLimit fields herald interprets; any other set
// field is an error naming it. always_consume_default_token_bucket only
// matters with descriptors, which herald refuses, so it is accepted.
var supported = []string{
	"stat_prefix", "status", "token_bucket", "filter_enabled", "filter_enforced",
	"request_headers_to_add_when_not_enforced", "response_headers_to_add",
	"local_rate_limit_per_downstream_connection", "enable_x_ratelimit_headers",
	"always_consume_default_token_bucket", "rate_limited_as_resource_exhausted",
	"enable_retry_after_header",
}

var unsupportedIssues = map[string]string{
	"descriptors":              "#8",
	"rate_limits":              "#8",
	"stage":                    "#8",
	"vh_rate_limits":           "#8",
	"max_dynamic_descriptors":  "#8",
	"local_cluster_rate_limit": "#8",
}

// Config is one built LocalRateLimit (the filter's or a route's). Immutable
// after Build except the bucket's atomic state.
type Config struct {
	name   string // the filter's name in http_filters (filter config only)
	status int
	// bucket is the shared bucket; nil without token_bucket (then nothing
	// is limited, as in Envoy).
	bucket        *tokenbucket.Bucket
	maxTokens     uint32
	tokensPerFill uint32
	fillInterval  time.Duration
	perConnection bool
	newConnBucket func() any

	enabled, enforced   fractional.Percent
	responseHeaders     headeroption.List
	requestHeaders      headeroption.List
	xRateLimitHeaders   bool
	retryAfter          bool
	resourceExhausted   bool
	limitValue          string // strconv of maxTokens, built once
	enabledC, enforcedC *stats.Counter
	rateLimitedC, okC   *stats.Counter
	pool                *sync.Pool
}

// Build interprets the filter's LocalRateLimit once per snapshot.
func Build(cfg *lrlv3.LocalRateLimit, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	c, err := build(cfg, ctx, false)
	if err != nil {
		return nil, err
	}
	c.name = ctx.Name
	if c.name == "" {
		c.name = Name
	}
	return c.newFilter, nil
}

// BuildPerRoute interprets a typed_per_filter_config LocalRateLimit: it gets
// its own bucket ("when using per route configuration, the bucket becomes
// unique to that route").
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	return build(m.(*lrlv3.LocalRateLimit), ctx, true)
}

func build(cfg *lrlv3.LocalRateLimit, ctx httpfilter.BuildContext, perRoute bool) (*Config, error) {
	path := ctx.Path
	errs := configerr.RejectUnlisted(cfg, path, unsupportedIssues, supported...)
	if cfg.GetStatPrefix() == "" {
		errs = append(errs, configerr.At(path+".stat_prefix", "stat_prefix is required"))
	}
	tb := cfg.GetTokenBucket()
	if perRoute && tb == nil {
		errs = append(errs, configerr.At(path+".token_bucket", "local rate limit token bucket must be set for per filter configs"))
	}
	c := &Config{
		status:            429,
		enabled:           fractional.Runtime(cfg.GetFilterEnabled(), fractional.Never),
		enforced:          fractional.Runtime(cfg.GetFilterEnforced(), fractional.Never),
		perConnection:     cfg.GetLocalRateLimitPerDownstreamConnection(),
		xRateLimitHeaders: cfg.GetEnableXRatelimitHeaders() != 0,
		retryAfter:        cfg.GetEnableRetryAfterHeader(),
		resourceExhausted: cfg.GetRateLimitedAsResourceExhausted(),
		pool:              &sync.Pool{},
	}
	// Envoy: "If this is set to < 400, 429 will be used instead."
	if s := int(cfg.GetStatus().GetCode()); s >= 400 {
		c.status = s
	}
	if tb != nil {
		fill := tb.GetFillInterval().AsDuration()
		if fill < minFillInterval {
			errs = append(errs, configerr.At(path+".token_bucket.fill_interval", "local rate limit token bucket fill timer must be >= 50ms"))
		}
		c.maxTokens = tb.GetMaxTokens()
		c.tokensPerFill = 1
		if v := tb.GetTokensPerFill(); v != nil {
			c.tokensPerFill = v.GetValue()
		}
		c.fillInterval = fill
		c.limitValue = strconv.FormatUint(uint64(c.maxTokens), 10)
		if c.perConnection {
			c.newConnBucket = func() any {
				return tokenbucket.New(c.maxTokens, c.tokensPerFill, c.fillInterval, tokenbucket.Now())
			}
		} else {
			c.bucket = tokenbucket.New(c.maxTokens, c.tokensPerFill, c.fillInterval, tokenbucket.Now())
		}
	}
	c.responseHeaders = headeroption.CompileList(cfg.GetResponseHeadersToAdd(), path+".response_headers_to_add", &errs)
	c.requestHeaders = headeroption.CompileList(cfg.GetRequestHeadersToAddWhenNotEnforced(), path+".request_headers_to_add_when_not_enforced", &errs)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	// Envoy roots these at the stat_prefix, not under http.<prefix>.
	// (FilterConfig::generateStats: prefix + ".http_local_rate_limit").
	sc := ctx.Stats.Scope(cfg.GetStatPrefix() + ".http_local_rate_limit.")
	c.enabledC = sc.Counter("enabled")
	c.enforcedC = sc.Counter("enforced")
	c.rateLimitedC = sc.Counter("rate_limited")
	c.okC = sc.Counter("ok")
	return c, nil
}

// newFilter is the per-stream constructor; filters are pooled and return
// to the pool in OnDestroy, so a request allocates none.
func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f, _ := c.pool.Get().(*Filter)
	if f == nil {
		f = &Filter{}
		f.modify = f.modifyReply
	}
	f.cfg, f.cb = c, cb
	return f
}

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cfg    *Config
	cb     httpfilter.Callbacks
	used   *Config             // the filter's or the route's config
	bucket *tokenbucket.Bucket // the bucket consulted, for x-ratelimit-*; nil when none
	modify func(*hhttp.Headers)
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// Filter::decodeHeaders (local_ratelimit.cc).
func (f *Filter) DecodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	used := f.cfg
	if r := f.cb.Route(); r != nil {
		if pc, ok := r.PerFilterConfig(f.cfg.name).(*Config); ok {
			used = pc
		}
	}
	f.used = used
	if !used.enabled.Hit() {
		return httpfilter.Continue
	}
	used.enabledC.Inc()
	b := used.bucket
	if used.perConnection && used.newConnBucket != nil {
		if cs, ok := f.cb.(httpfilter.ConnectionState); ok {
			b = cs.ConnectionValue(used, used.newConnBucket).(*tokenbucket.Bucket)
		} else {
			b = used.newConnBucket().(*tokenbucket.Bucket)
		}
	}
	if b == nil {
		// No token bucket: Envoy allows the request and has no bucket to
		// report in x-ratelimit-* headers.
		used.okC.Inc()
		return httpfilter.Continue
	}
	f.bucket = b
	if b.Consume(tokenbucket.Now()) {
		used.okC.Inc()
		return httpfilter.Continue
	}
	used.rateLimitedC.Inc()
	if !used.enforced.Hit() {
		used.requestHeaders.Apply(h)
		return httpfilter.Continue
	}
	used.enforcedC.Inc()
	f.cb.StreamInfo().SetFlag(streaminfo.RateLimited)
	f.cb.SendLocalReply(used.status, Details, Details, f.modify)
	return httpfilter.Stop
}

// modifyReply adds response_headers_to_add (and retry-after, and gRPC's
// RESOURCE_EXHAUSTED) to the rate-limited reply.
func (f *Filter) modifyReply(h *hhttp.Headers) {
	used := f.used
	used.responseHeaders.Apply(h)
	if used.resourceExhausted && h.Has("grpc-status") {
		h.Set("grpc-status", "8")
	}
	if used.retryAfter && used.status == 429 && f.bucket != nil && !h.Has(headerRetry) {
		// "the number of seconds until the next token is available in the
		// bucket that rejected the request, clamped to at least 1".
		d := f.bucket.UntilNext(tokenbucket.Now())
		secs := int64((d + time.Second - 1) / time.Second)
		if secs < 1 {
			secs = 1
		}
		h.Add(headerRetry, strconv.FormatInt(secs, 10))
	}
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// EncodeHeaders implements httpfilter.EncoderFilter: the x-ratelimit-*
// headers of enable_x_ratelimit_headers (DRAFT_VERSION_03), from the bucket
// the request consulted.
func (f *Filter) EncodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	if f.bucket == nil || !f.used.xRateLimitHeaders {
		return httpfilter.Continue
	}
	now := tokenbucket.Now()
	h.Add(headerLimit, f.used.limitValue)
	h.Add(headerRemaining, strconv.FormatUint(f.bucket.Remaining(now), 10))
	h.Add(headerReset, strconv.FormatUint(f.bucket.ResetSeconds(now), 10))
	return httpfilter.Continue
}

// EncodeData implements httpfilter.EncoderFilter.
func (f *Filter) EncodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// EncodeTrailers implements httpfilter.EncoderFilter.
func (f *Filter) EncodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// OnDestroy implements httpfilter.Destroyer: the filter goes back to its
// config's pool.
func (f *Filter) OnDestroy() {
	pool := f.cfg.pool
	f.cfg, f.cb, f.used, f.bucket = nil, nil, nil, nil
	pool.Put(f)
}
