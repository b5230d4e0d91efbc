package ratelimit

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	commonrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/metadata"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/router"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// newFilter is the per-stream constructor; filters are pooled and return
// to the pool in OnDestroy, keeping their descriptor slices.
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
	cfg *Config
	cb  httpfilter.Callbacks

	descs  []router.RateLimitDescriptor
	req    router.RateLimitRequest
	modify func(*hhttp.Headers)

	// From the service's answer, for the response: its
	// response_headers_to_add, x-envoy-ratelimited and x-ratelimit-*.
	respHeaders []*corev3.HeaderValue
	overLimit   bool
	xrl         xRateLimit
}

// xRateLimit are the x-ratelimit-* values (DRAFT_VERSION_03); set is false
// when no descriptor status had a current limit.
type xRateLimit struct {
	set              bool
	limit, remaining string
	reset            string
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// Filter::decodeHeaders and initiateCall. The call blocks this stream only.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	c := f.cfg
	if !c.enabled.Hit() {
		return httpfilter.Continue
	}
	// Envoy: x-envoy-internal: true marks an internal request.
	internal := h.Get(headerInternal) == "true"
	if (internal && c.requestType == requestExternal) || (!internal && c.requestType == requestInternal) {
		return httpfilter.Continue
	}
	rt, _ := f.cb.Route().(*router.Route)
	if rt == nil || rt.Kind() != router.ActionCluster || !rt.HasRateLimits() {
		return httpfilter.Continue
	}
	// Envoy skips the call when the route's cluster does not exist
	// (callbacks_->clusterInfo() is null). With weighted_clusters the pick
	// here only names the stats' cluster: herald's router picks again
	// (destination_cluster is refused there at load).
	cluster, _ := rt.PickCluster(h, rand.Uint64())
	if cluster == "" || (c.clusters != nil && c.clusters.Cluster(cluster) == nil) {
		return httpfilter.Continue
	}
	vh := router.VhRateLimitsOverride
	domain := c.domain
	if pr, ok := f.cb.Route().PerFilterConfig(c.name).(*PerRoute); ok {
		vh = pr.vh
		if pr.domain != "" {
			domain = pr.domain
		}
	}
	f.req = router.RateLimitRequest{
		Headers:            h,
		Remote:             f.cb.DownstreamRemoteAddress(),
		LocalCluster:       c.localCluster,
		DestinationCluster: cluster,
	}
	f.descs = rt.AppendRateLimitDescriptors(f.descs[:0], c.stage, vh, &f.req)
	f.req.Headers = nil
	if len(f.descs) == 0 {
		return httpfilter.Continue
	}

	st := c.statsFor(cluster)
	resp, err := f.call(domain)
	if err != nil {
		st.err.Inc()
		if !c.failureModeDeny {
			st.failureModeAllowed.Inc()
			return httpfilter.Continue
		}
		f.cb.StreamInfo().SetFlag(streaminfo.RateLimitServiceError)
		f.cb.SendLocalReply(c.errorStatus, "", DetailsError, nil)
		return httpfilter.Stop
	}
	f.respHeaders = resp.GetResponseHeadersToAdd()
	if c.xRateLimitHeaders {
		f.xrl = xRateLimitHeaders(resp.GetStatuses())
	}
	// Envoy's GrpcClientImpl: anything but OVER_LIMIT is OK.
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		st.ok.Inc()
		addRequestHeaders(h, resp.GetRequestHeadersToAdd())
		return httpfilter.Continue
	}
	st.overLimit.Inc()
	f.overLimit = true
	if !c.enforced.Hit() {
		// Envoy: an unenforced OVER_LIMIT continues like OK; the response
		// still gets x-envoy-ratelimited.
		addRequestHeaders(h, resp.GetRequestHeadersToAdd())
		return httpfilter.Continue
	}
	f.cb.StreamInfo().SetFlag(streaminfo.RateLimited)
	f.cb.SendLocalReply(c.rateLimitedStatus, string(resp.GetRawBody()), DetailsRateLimited, f.modify)
	return httpfilter.Stop
}

// call asks the service about f.descs, within the filter's timeout.
func (f *Filter) call(domain string) (*rlsv3.RateLimitResponse, error) {
	c := f.cfg
	ctx := f.cb.Context()
	if len(c.svc.Metadata) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, c.svc.Metadata)
	}
	cancel := context.CancelFunc(func() {})
	if c.timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
	}
	defer cancel()
	req := &rlsv3.RateLimitRequest{Domain: domain, Descriptors: make([]*commonrlv3.RateLimitDescriptor, len(f.descs))}
	for i := range f.descs {
		d := &f.descs[i]
		pd := &commonrlv3.RateLimitDescriptor{Entries: make([]*commonrlv3.RateLimitDescriptor_Entry, len(d.Entries))}
		for j, e := range d.Entries {
			pd.Entries[j] = &commonrlv3.RateLimitDescriptor_Entry{Key: e.Key, Value: e.Value}
		}
		if d.Limit != nil {
			pd.Limit = &commonrlv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: d.Limit.RequestsPerUnit, Unit: d.Limit.Unit}
		}
		req.Descriptors[i] = pd
	}
	return c.client.ShouldRateLimit(ctx, req)
}

// modifyReply finishes the OVER_LIMIT reply: the service's headers (a
// content-type from the service replaces the local reply's), the filter's
// response_headers_to_add, and gRPC's RESOURCE_EXHAUSTED when configured.
func (f *Filter) modifyReply(h *hhttp.Headers) {
	for _, hv := range f.respHeaders {
		if strings.EqualFold(hv.GetKey(), "content-type") {
			h.Del("content-type")
			break
		}
	}
	f.addResponseHeaders(h)
	f.cfg.responseHeaders.Apply(h)
	if f.cfg.resourceExhausted && h.Has("grpc-status") {
		h.Set("grpc-status", "8")
	}
}

// addResponseHeaders adds, once, what the service's answer puts on the
// response (Envoy's populateResponseHeaders).
func (f *Filter) addResponseHeaders(h *hhttp.Headers) {
	for _, hv := range f.respHeaders {
		h.Add(strings.ToLower(hv.GetKey()), headerValue(hv))
	}
	if f.overLimit && f.cfg.xEnvoyRateLimited {
		h.Add(HeaderRateLimited, "true")
	}
	if f.xrl.set {
		h.Add(headerLimit, f.xrl.limit)
		h.Add(headerRemaining, f.xrl.remaining)
		h.Add(headerReset, f.xrl.reset)
	}
	f.respHeaders, f.overLimit, f.xrl = nil, false, xRateLimit{}
}

// addRequestHeaders adds the service's request_headers_to_add.
func addRequestHeaders(h *hhttp.Headers, hvs []*corev3.HeaderValue) {
	for _, hv := range hvs {
		h.Add(strings.ToLower(hv.GetKey()), headerValue(hv))
	}
}

// headerValue is hv's value, or its raw_value.
func headerValue(hv *corev3.HeaderValue) string {
	if v := hv.GetValue(); v != "" {
		return v
	}
	return string(hv.GetRawValue())
}

// xRateLimitHeaders is Envoy's XRateLimitHeaderUtils::create: the status
// with the fewest remaining requests gives the values; x-ratelimit-limit
// carries the quota policy of every status with a known window.
func xRateLimitHeaders(statuses []*rlsv3.RateLimitResponse_DescriptorStatus) xRateLimit {
	var minStatus *rlsv3.RateLimitResponse_DescriptorStatus
	var policy strings.Builder
	for _, s := range statuses {
		if s.GetCurrentLimit() == nil {
			continue
		}
		if minStatus == nil || s.GetLimitRemaining() < minStatus.GetLimitRemaining() {
			minStatus = s
		}
		if w := window(s.GetCurrentLimit().GetUnit()); w != 0 {
			policy.WriteString(", ")
			policy.WriteString(strconv.FormatUint(uint64(s.GetCurrentLimit().GetRequestsPerUnit()), 10))
			policy.WriteString(";w=")
			policy.WriteString(strconv.FormatUint(uint64(w), 10))
			if n := s.GetCurrentLimit().GetName(); n != "" {
				policy.WriteString(`;name="`)
				policy.WriteString(n)
				policy.WriteString(`"`)
			}
		}
	}
	if minStatus == nil {
		return xRateLimit{}
	}
	return xRateLimit{
		set:       true,
		limit:     strconv.FormatUint(uint64(minStatus.GetCurrentLimit().GetRequestsPerUnit()), 10) + policy.String(),
		remaining: strconv.FormatUint(uint64(minStatus.GetLimitRemaining()), 10),
		reset:     strconv.FormatInt(minStatus.GetDurationUntilReset().GetSeconds(), 10),
	}
}

// window is a unit in seconds; 0 for units Envoy gives no window.
func window(u rlsv3.RateLimitResponse_RateLimit_Unit) uint32 {
	switch u {
	case rlsv3.RateLimitResponse_RateLimit_SECOND:
		return 1
	case rlsv3.RateLimitResponse_RateLimit_MINUTE:
		return 60
	case rlsv3.RateLimitResponse_RateLimit_HOUR:
		return 60 * 60
	case rlsv3.RateLimitResponse_RateLimit_DAY:
		return 24 * 60 * 60
	}
	return 0
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// EncodeHeaders implements httpfilter.EncoderFilter: the service's
// response_headers_to_add and x-ratelimit-* go on the upstream's response
// too.
func (f *Filter) EncodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	if f.respHeaders != nil || f.overLimit || f.xrl.set {
		f.addResponseHeaders(h)
	}
	return httpfilter.Continue
}

// EncodeData implements httpfilter.EncoderFilter.
func (f *Filter) EncodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// EncodeTrailers implements httpfilter.EncoderFilter.
func (f *Filter) EncodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// OnDestroy implements httpfilter.Destroyer: the filter goes back to its
// config's pool, keeping its descriptor slice for the next stream.
func (f *Filter) OnDestroy() {
	c := f.cfg
	for i := range f.descs {
		f.descs[i].Entries = f.descs[i].Entries[:0]
	}
	f.descs = f.descs[:0]
	f.cfg, f.cb, f.req = nil, nil, router.RateLimitRequest{}
	f.respHeaders, f.overLimit, f.xrl = nil, false, xRateLimit{}
	c.pool.Put(f)
}
