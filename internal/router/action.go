package router

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/matcher"
)

// defaultRouteTimeout is RouteAction.timeout's default: "If not specified,
// the default is 15s" (route_components.proto, RouteAction.timeout).
const defaultRouteTimeout = 15 * time.Second

// headerOriginalPath is set to the path before a rewrite (Envoy's
// x-envoy-original-path) when the caller asks for it.
const headerOriginalPath = "x-envoy-original-path"

// ActionKind is what a matched route does.
type ActionKind int

const (
	// ActionCluster forwards the request to an upstream cluster.
	ActionCluster ActionKind = iota + 1
	// ActionDirectResponse answers with a fixed status and body.
	ActionDirectResponse
	// ActionRedirect answers with a redirect (RedirectLocation, Status).
	ActionRedirect
)

// Route is a compiled route.v3.Route. Immutable after Build; safe for
// concurrent use. It implements httpfilter.Route.
type Route struct {
	name     string
	vhost    *VirtualHost
	metadata *corev3.Metadata
	match    routeMatch
	kind     ActionKind

	// ActionCluster.
	cluster             string
	clusterHeader       string
	weighted            []*WeightedCluster
	totalWeight         uint64
	randomValueHeader   string
	clusterNotFoundCode int
	prefixRewrite       string
	regexRewrite        *regexp.Regexp
	regexSubst          string
	hostLiteral         string
	hostHeader          string
	hostPathRegex       *regexp.Regexp
	hostPathSubst       string
	autoHostRewrite     bool
	appendXFH           bool
	timeout             time.Duration
	timeoutHeader       string // timeout in ms, for x-envoy-expected-rq-timeout-ms
	idleTimeout         optDuration
	maxStreamDuration   optDuration
	grpcTimeoutMax      optDuration
	grpcTimeoutOffset   optDuration
	hashPolicy          *HashPolicy
	upgrades            []routeUpgrade // upgrade_configs (upgrade.go)
	connectTerminate    bool           // a CONNECT entry has connect_config
	retry               routeRetry
	ext                 routeExt // mirror policies, priority (mirror_route.go)

	// ActionDirectResponse (status, body) and ActionRedirect (status).
	status   int
	body     string
	redirect *redirectAction

	requestMutations  headerMutations
	responseMutations headerMutations
	perFilter         perFilterConfigs

	rateLimits          rateLimitPolicy // rate_limits (ratelimit.go)
	includeVhRateLimits bool
}

var _ httpfilter.Route = (*Route)(nil)

type optDuration struct {
	d   time.Duration
	set bool
}

func optDur(d *durationpb.Duration) optDuration {
	if d == nil {
		return optDuration{}
	}
	return optDuration{d: d.AsDuration(), set: true}
}

// WeightedCluster is one entry of a route's weighted_clusters. Immutable
// after Build.
type WeightedCluster struct {
	name              string
	clusterHeader     string
	weight            uint64
	route             *Route
	hostRewrite       string
	requestMutations  headerMutations
	responseMutations headerMutations
	perFilter         perFilterConfigs
}

// Name returns the cluster name ("" when the entry uses cluster_header).
func (w *WeightedCluster) Name() string { return w.name }

// Weight returns the entry's weight.
func (w *WeightedCluster) Weight() uint64 { return w.weight }

// PerFilterConfig returns the most specific per-route config of the filter
// called name: this entry's, then the route's, virtual host's and table's.
func (w *WeightedCluster) PerFilterConfig(name string) any {
	if c := w.perFilter.get(name); c != nil {
		return c
	}
	return w.route.PerFilterConfig(name)
}

func (b *builder) buildRoute(cfg *routev3.Route, vh *VirtualHost, p string) *Route {
	checkUnsupported(cfg, p, &b.errs)
	r := &Route{name: cfg.GetName(), vhost: vh, metadata: cfg.GetMetadata()}
	if cfg.GetMatch() == nil {
		b.errs = append(b.errs, configerr.At(p+".match", "match is required"))
		return nil
	}
	r.match = buildRouteMatch(cfg.GetMatch(), p+".match", &b.errs)
	switch a := cfg.GetAction().(type) {
	case *routev3.Route_Route:
		r.kind = ActionCluster
		b.buildRouteAction(r, a.Route, p+".route")
		buildRouteRateLimits(r, a.Route, p+".route", &b.errs)
		r.retry = buildRouteRetry(a.Route, cfg, vh, p+".route", &b.errs)
	case *routev3.Route_DirectResponse:
		r.kind = ActionDirectResponse
		b.buildDirectResponse(r, a.DirectResponse, p+".direct_response")
	case *routev3.Route_Redirect:
		r.kind = ActionRedirect
		b.buildRedirect(r, a.Redirect, p+".redirect")
	case nil:
		b.errs = append(b.errs, configerr.At(p, "one of route, redirect or direct_response is required"))
		return nil
	default:
		// filter_action, non_forwarding_action: reported by checkUnsupported.
		return nil
	}
	r.requestMutations = buildHeaderMutations(cfg.GetRequestHeadersToAdd(), cfg.GetRequestHeadersToRemove(),
		p+".request_headers_to_add", p+".request_headers_to_remove", &b.errs)
	r.responseMutations = buildHeaderMutations(cfg.GetResponseHeadersToAdd(), cfg.GetResponseHeadersToRemove(),
		p+".response_headers_to_add", p+".response_headers_to_remove", &b.errs)
	r.perFilter = buildPerFilterConfigs(cfg.GetTypedPerFilterConfig(), p+".typed_per_filter_config", b.ctx.FilterContext, &b.errs)
	return r
}

func (b *builder) buildRouteAction(r *Route, a *routev3.RouteAction, p string) {
	checkUnsupported(a, p, &b.errs)
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		r.cluster = cs.Cluster
		b.useCluster(cs.Cluster, p+".cluster", "unknown cluster")
	case *routev3.RouteAction_ClusterHeader:
		r.clusterHeader = strings.ToLower(cs.ClusterHeader)
	case *routev3.RouteAction_WeightedClusters:
		b.buildWeightedClusters(r, cs.WeightedClusters, p+".weighted_clusters")
	case nil:
		b.errs = append(b.errs, configerr.At(p, "one of cluster, cluster_header or weighted_clusters is required"))
	}
	switch a.GetClusterNotFoundResponseCode() {
	case routev3.RouteAction_NOT_FOUND:
		r.clusterNotFoundCode = 404
	case routev3.RouteAction_INTERNAL_SERVER_ERROR:
		r.clusterNotFoundCode = 500
	default:
		r.clusterNotFoundCode = 503
	}

	// Envoy: only one of prefix_rewrite, regex_rewrite, path_rewrite_policy.
	r.prefixRewrite = a.GetPrefixRewrite()
	if a.GetRegexRewrite() != nil {
		if r.prefixRewrite != "" {
			b.errs = append(b.errs, configerr.At(p+".regex_rewrite", "specify only one of prefix_rewrite, regex_rewrite or path_rewrite_policy"))
		}
		re, sub, err := matcher.CompileRewrite(a.GetRegexRewrite())
		if err != nil {
			b.errs = append(b.errs, configerr.At(p+".regex_rewrite", "%v", err))
		}
		r.regexRewrite, r.regexSubst = re, sub
	}

	switch hr := a.GetHostRewriteSpecifier().(type) {
	case *routev3.RouteAction_HostRewriteLiteral:
		r.hostLiteral = hr.HostRewriteLiteral
	case *routev3.RouteAction_AutoHostRewrite:
		r.autoHostRewrite = hr.AutoHostRewrite.GetValue()
	case *routev3.RouteAction_HostRewriteHeader:
		r.hostHeader = strings.ToLower(hr.HostRewriteHeader)
	case *routev3.RouteAction_HostRewritePathRegex:
		re, sub, err := matcher.CompileRewrite(hr.HostRewritePathRegex)
		if err != nil {
			b.errs = append(b.errs, configerr.At(p+".host_rewrite_path_regex", "%v", err))
		}
		r.hostPathRegex, r.hostPathSubst = re, sub
	}
	r.appendXFH = a.GetAppendXForwardedHost()

	// Envoy: timeout defaults to 15s; 0 disables it.
	r.timeout = defaultRouteTimeout
	if a.GetTimeout() != nil {
		r.timeout = a.GetTimeout().AsDuration()
	}
	r.timeoutHeader = strconv.FormatInt(r.timeout.Milliseconds(), 10)
	r.idleTimeout = optDur(a.GetIdleTimeout())
	if msd := a.GetMaxStreamDuration(); msd != nil {
		r.maxStreamDuration = optDur(msd.GetMaxStreamDuration())
		r.grpcTimeoutMax = optDur(msd.GetGrpcTimeoutHeaderMax())
		r.grpcTimeoutOffset = optDur(msd.GetGrpcTimeoutHeaderOffset())
	}
	hp, err := CompileHashPolicy(a.GetHashPolicy(), p+".hash_policy")
	if err != nil {
		b.errs = append(b.errs, configerr.Collect(err, p+".hash_policy", nil)...)
	}
	r.hashPolicy = hp
	b.buildUpgrades(r, a.GetUpgradeConfigs(), p+".upgrade_configs")
	b.buildRouteExt(r, a, p)
}

func (b *builder) buildWeightedClusters(r *Route, wc *routev3.WeightedCluster, p string) {
	checkUnsupported(wc, p, &b.errs)
	r.randomValueHeader = strings.ToLower(wc.GetHeaderName())
	for i, cw := range wc.GetClusters() {
		cp := fmt.Sprintf("%s.clusters[%d]", p, i)
		checkUnsupported(cw, cp, &b.errs)
		w := &WeightedCluster{
			name:          cw.GetName(),
			clusterHeader: strings.ToLower(cw.GetClusterHeader()),
			weight:        uint64(cw.GetWeight().GetValue()),
			route:         r,
			hostRewrite:   cw.GetHostRewriteLiteral(),
		}
		// Envoy: validateWeightedClusterSpecifier.
		switch {
		case w.name != "" && w.clusterHeader != "":
			b.errs = append(b.errs, configerr.At(cp, "only one of name or cluster_header can be specified"))
		case w.name == "" && w.clusterHeader == "":
			b.errs = append(b.errs, configerr.At(cp, "at least one of name or cluster_header need to be specified"))
		case w.name != "":
			b.useCluster(w.name, cp+".name", "unknown weighted cluster")
		}
		w.requestMutations = buildHeaderMutations(cw.GetRequestHeadersToAdd(), cw.GetRequestHeadersToRemove(),
			cp+".request_headers_to_add", cp+".request_headers_to_remove", &b.errs)
		w.responseMutations = buildHeaderMutations(cw.GetResponseHeadersToAdd(), cw.GetResponseHeadersToRemove(),
			cp+".response_headers_to_add", cp+".response_headers_to_remove", &b.errs)
		w.perFilter = buildPerFilterConfigs(cw.GetTypedPerFilterConfig(), cp+".typed_per_filter_config", b.ctx.FilterContext, &b.errs)
		r.weighted = append(r.weighted, w)
		r.totalWeight += w.weight
	}
	if r.totalWeight == 0 {
		b.errs = append(b.errs, configerr.At(p, "sum of weights in the weighted_cluster must be greater than 0"))
	}
}

// useCluster records a referenced cluster and checks it exists (Envoy's
// RouteEntryImplBase::validateClusters: "route: unknown cluster 'x'").
func (b *builder) useCluster(name, p, msg string) {
	b.clusters[name] = struct{}{}
	if b.validate && !b.ctx.ClusterExists(name) {
		b.errs = append(b.errs, configerr.At(p, "%s %q", msg, name))
	}
}

func (b *builder) buildDirectResponse(r *Route, d *routev3.DirectResponseAction, p string) {
	checkUnsupported(d, p, &b.errs)
	r.status = int(d.GetStatus())
	if d.GetBody() == nil {
		return
	}
	bp := p + ".body"
	checkUnsupported(d.GetBody(), bp, &b.errs)
	// Envoy (ConfigUtility::parseDirectResponseBody, DataSource::read): the
	// body is read once at load and may not exceed
	// max_direct_response_body_size_bytes.
	var body string
	switch s := d.GetBody().GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		fi, err := os.Stat(s.Filename)
		if err != nil {
			b.errs = append(b.errs, configerr.At(bp+".filename", "response body file %s does not exist", s.Filename))
			return
		}
		if fi.Size() > int64(b.maxBody) {
			b.errs = append(b.errs, configerr.At(bp+".filename", "response body file %s size is %d bytes; maximum is %d", s.Filename, fi.Size(), b.maxBody))
			return
		}
		data, err := os.ReadFile(s.Filename)
		if err != nil {
			b.errs = append(b.errs, configerr.At(bp+".filename", "cannot read response body file: %v", err))
			return
		}
		body = string(data)
	case *corev3.DataSource_InlineBytes:
		body = string(s.InlineBytes)
	case *corev3.DataSource_InlineString:
		body = s.InlineString
	case *corev3.DataSource_EnvironmentVariable:
		v, ok := os.LookupEnv(s.EnvironmentVariable)
		if !ok {
			b.errs = append(b.errs, configerr.At(bp+".environment_variable", "environment variable %s is not set", s.EnvironmentVariable))
			return
		}
		body = v
	}
	if len(body) > b.maxBody {
		b.errs = append(b.errs, configerr.At(bp, "response body size is %d bytes; maximum is %d", len(body), b.maxBody))
		return
	}
	r.body = body
}

// Name returns the route's name ("" when unnamed).
func (r *Route) Name() string { return r.name }

// Kind returns what the route does.
func (r *Route) Kind() ActionKind { return r.kind }

// VirtualHost returns the virtual host the route belongs to.
func (r *Route) VirtualHost() *VirtualHost { return r.vhost }

// Metadata returns the route's metadata, or nil.
func (r *Route) Metadata() *corev3.Metadata { return r.metadata }

// PickCluster chooses the upstream cluster of an ActionCluster route:
// cluster, the first value of cluster_header ("" when absent: the caller
// answers ClusterNotFoundCode), or one of weighted_clusters by random (or by
// the value of weighted_clusters.header_name when it holds exactly one
// unsigned integer), Envoy's RouteEntryImplBase::pickWeightedCluster. The
// *WeightedCluster is nil unless weighted_clusters picked it; pass it to the
// header methods so its mutations and host rewrite apply.
func (r *Route) PickCluster(h *hhttp.Headers, random uint64) (string, *WeightedCluster) {
	switch {
	case r.kind != ActionCluster:
		return "", nil
	case r.cluster != "":
		return r.cluster, nil
	case r.clusterHeader != "":
		return h.Get(r.clusterHeader), nil
	case r.totalWeight == 0:
		return "", nil
	}
	v := random
	if r.randomValueHeader != "" && h.Count(r.randomValueHeader) == 1 {
		if n, err := strconv.ParseUint(h.Get(r.randomValueHeader), 10, 64); err == nil {
			v = n
		}
	}
	sel := v % r.totalWeight
	var begin uint64
	for _, w := range r.weighted {
		end := begin + w.weight
		if sel < end {
			if w.clusterHeader != "" {
				if name, ok := h.Lookup(w.clusterHeader); ok {
					return name, w
				}
			}
			return w.name, w
		}
		begin = end
	}
	return "", nil
}

// ClusterName returns the cluster PickCluster chooses.
func (r *Route) ClusterName(h *hhttp.Headers, random uint64) string {
	name, _ := r.PickCluster(h, random)
	return name
}

// WeightedClusters returns the weighted_clusters entries, or nil.
func (r *Route) WeightedClusters() []*WeightedCluster { return r.weighted }

// ClusterNotFoundCode is the status to answer when the picked cluster does
// not exist (cluster_not_found_response_code: 503 by default, 404, 500).
func (r *Route) ClusterNotFoundCode() int { return r.clusterNotFoundCode }

// Timeout is the upstream response timeout (RouteAction.timeout, 15s by
// default); 0 means disabled.
func (r *Route) Timeout() time.Duration { return r.timeout }

// TimeoutHeader is Timeout in milliseconds as a header value, formatted once.
func (r *Route) TimeoutHeader() string { return r.timeoutHeader }

// IdleTimeout is RouteAction.idle_timeout; ok is false when unset (the
// connection manager's stream_idle_timeout applies); 0 disables it.
func (r *Route) IdleTimeout() (d time.Duration, ok bool) { return r.idleTimeout.d, r.idleTimeout.set }

// MaxStreamDuration is max_stream_duration.max_stream_duration; ok is false
// when unset.
func (r *Route) MaxStreamDuration() (d time.Duration, ok bool) {
	return r.maxStreamDuration.d, r.maxStreamDuration.set
}

// GrpcTimeoutHeaderMax is max_stream_duration.grpc_timeout_header_max.
func (r *Route) GrpcTimeoutHeaderMax() (d time.Duration, ok bool) {
	return r.grpcTimeoutMax.d, r.grpcTimeoutMax.set
}

// GrpcTimeoutHeaderOffset is max_stream_duration.grpc_timeout_header_offset.
func (r *Route) GrpcTimeoutHeaderOffset() (d time.Duration, ok bool) {
	return r.grpcTimeoutOffset.d, r.grpcTimeoutOffset.set
}

// AutoHostRewrite reports auto_host_rewrite: the forwarding engine sets
// :authority to the picked upstream host's hostname.
func (r *Route) AutoHostRewrite() bool { return r.autoHostRewrite }

// HashPolicy is the compiled RouteAction.hash_policy, or nil. Only hashing
// load balancers (ring_hash, maglev) use it, as in Envoy.
func (r *Route) HashPolicy() *HashPolicy { return r.hashPolicy }

// Status is the direct_response status or the redirect's response code.
func (r *Route) Status() int { return r.status }

// DirectResponseBody is the direct_response body, read at load.
func (r *Route) DirectResponseBody() string { return r.body }

// PerFilterConfig implements httpfilter.Route: the route's
// typed_per_filter_config for the filter called name, else the virtual
// host's, else the table's (Envoy's mostSpecificPerFilterConfig), or nil.
func (r *Route) PerFilterConfig(name string) any {
	if c := r.perFilter.get(name); c != nil {
		return c
	}
	if c := r.vhost.perFilter.get(name); c != nil {
		return c
	}
	return r.vhost.table.perFilter.get(name)
}

// FilterDisabled reports whether the most specific level that says anything
// about the filter (through an envoy.config.route.v3.FilterConfig wrapper or
// a plain config, which enables it) disables it; set is false when no level
// mentions the filter.
func (r *Route) FilterDisabled(name string) (disabled, set bool) {
	if d, ok := r.perFilter.disabled(name); ok {
		return d, true
	}
	if d, ok := r.vhost.perFilter.disabled(name); ok {
		return d, true
	}
	return r.vhost.table.perFilter.disabled(name)
}

// levels returns the route, virtual host and table mutations in the order
// Envoy applies them (router/config_impl.cc getHeaderParsers): most specific
// first by default, so the route configuration's values win; least specific
// first with most_specific_header_mutations_wins.
func (r *Route) levels(response bool) [3]*headerMutations {
	rt, vh, tb := &r.requestMutations, &r.vhost.requestMutations, &r.vhost.table.requestMutations
	if response {
		rt, vh, tb = &r.responseMutations, &r.vhost.responseMutations, &r.vhost.table.responseMutations
	}
	if r.vhost.table.mostSpecificWins {
		return [3]*headerMutations{tb, vh, rt}
	}
	return [3]*headerMutations{rt, vh, tb}
}

// ApplyRequestHeaders applies request_headers_to_remove/add of the picked
// weighted cluster (wc, may be nil; always first, as Envoy's
// WeightedClusterEntry), then of the route, virtual host and route
// configuration in Envoy's order (see MostSpecificHeaderMutationsWins).
// Rewrites are separate: FinalizeRequestHeaders does everything in order.
func (r *Route) ApplyRequestHeaders(h *hhttp.Headers, wc *WeightedCluster, ctx HeaderValueContext) {
	if wc != nil {
		wc.requestMutations.apply(h, ctx, false)
	}
	for _, m := range r.levels(false) {
		if !m.empty() {
			m.apply(h, ctx, false)
		}
	}
}

// ApplyResponseHeaders is ApplyRequestHeaders for response_headers_*.
func (r *Route) ApplyResponseHeaders(h *hhttp.Headers, wc *WeightedCluster, ctx HeaderValueContext) {
	if wc != nil {
		wc.responseMutations.apply(h, ctx, true)
	}
	for _, m := range r.levels(true) {
		if !m.empty() {
			m.apply(h, ctx, true)
		}
	}
}

// FinalizeRequestHeaders is Envoy's RouteEntryImplBase::finalizeRequestHeaders
// for a forwarded request: the weighted cluster's mutations and
// host_rewrite_literal, the route/virtual host/table mutations, the route's
// host rewrite, then the path rewrite (recording the old path in
// x-envoy-original-path when insertOriginalPath).
func (r *Route) FinalizeRequestHeaders(h *hhttp.Headers, wc *WeightedCluster, ctx HeaderValueContext, insertOriginalPath bool) {
	if wc != nil {
		wc.requestMutations.apply(h, ctx, false)
		if wc.hostRewrite != "" {
			h.Set(hhttp.Authority, wc.hostRewrite)
		}
	}
	for _, m := range r.levels(false) {
		if !m.empty() {
			m.apply(h, ctx, false)
		}
	}
	r.rewriteRouteHost(h)
	r.RewritePath(h, insertOriginalPath)
}
