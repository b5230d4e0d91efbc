package router

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/fractional"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

// Request mirroring (RouteAction.request_mirror_policies,
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-msg-config-route-v3-routeaction-requestmirrorpolicy),
// as Envoy's router.cc (decodeHeaders picks the active policies,
// onRequestComplete → maybeDoShadowing sends them) and
// shadow_writer_impl.cc:
//
//   - Policies come from the route, else its virtual host, else the route
//     configuration: "the most specific non-empty one becomes the mirror
//     policies" (they are not merged).
//   - Each policy mirrors runtime_fraction.default_value of the requests
//     (100% when unset; herald has no runtime, so runtime_key is not read).
//     CONNECT requests are never mirrored.
//   - The mirror goes to cluster, or to the cluster named by the first value
//     of cluster_header (no mirror when the header is absent or empty, nor
//     when the cluster does not exist at send time).
//   - The mirror carries the request headers as the router forwards them
//     (route header mutations applied), :authority suffixed "-shadow"
//     (shadowHost) unless disable_shadow_host_suffix_append, or replaced by
//     host_rewrite_literal; and the request body and trailers, buffered up to the
//     request's buffer limit (the same buffer retries replay; past it the
//     mirror is abandoned and retry_or_shadow_abandoned counts it).
//   - It is sent when the downstream request is complete, fire and forget,
//     on its own goroutine through the async client (the shadow cluster's
//     load balancer, pools, circuit breakers and cluster.<shadow>.* stats),
//     with the main request's route timeout. Its response is read and
//     discarded; nothing about it reaches the main request. The shadow
//     cluster's circuit breakers bound the mirrors in flight: over
//     max_pending_requests / max_requests a mirror fails at once
//     (upstream_rq_pending_overflow) and its goroutine ends.
//   - trace_sampled is accepted without effect: herald has no tracer.
//
// Not done (documented gap): with auto_host_rewrite the mirror
// carries the rewritten host (Envoy copies the headers before the upstream
// host is known).

// mirrorPolicy is a compiled RouteAction.RequestMirrorPolicy. Immutable.
type mirrorPolicy struct {
	cluster       string
	clusterHeader string // lowercased
	fraction      fractional.Percent
	hostLiteral   string
	noSuffix      bool
}

// mirrorFields are the RequestMirrorPolicy fields herald implements; any
// other set field (request_headers_mutations, fields Envoy adds later) is
// refused by name.
var mirrorFields = []string{
	"cluster", "cluster_header", "runtime_fraction", "trace_sampled",
	"disable_shadow_host_suffix_append", "host_rewrite_literal",
}

// buildMirrorPolicies compiles one level's request_mirror_policies; p is
// the list's path.
func (b *builder) buildMirrorPolicies(cfgs []*routev3.RouteAction_RequestMirrorPolicy, p string) []*mirrorPolicy {
	if len(cfgs) == 0 {
		return nil
	}
	out := make([]*mirrorPolicy, 0, len(cfgs))
	for i, c := range cfgs {
		mp := fmt.Sprintf("%s[%d]", p, i)
		b.errs = append(b.errs, configerr.CheckFields(c, mp, mirrorFields...)...)
		// Envoy's validateMirrorClusterSpecifier.
		switch {
		case c.GetCluster() != "" && c.GetClusterHeader() != "":
			b.errs = append(b.errs, configerr.At(mp, "only one of cluster %q or cluster_header %q in request mirror policy can be specified", c.GetCluster(), c.GetClusterHeader()))
			continue
		case c.GetCluster() == "" && c.GetClusterHeader() == "":
			b.errs = append(b.errs, configerr.At(mp, "exactly one of cluster or cluster_header in request mirror policy need to be specified"))
			continue
		case c.GetCluster() != "":
			// Envoy's validateClusters: "route: unknown shadow cluster".
			b.useCluster(c.GetCluster(), mp+".cluster", "unknown shadow cluster")
		}
		out = append(out, &mirrorPolicy{
			cluster:       c.GetCluster(),
			clusterHeader: strings.ToLower(c.GetClusterHeader()),
			// Envoy's ShadowPolicyImpl: "If there is no runtime fraction
			// specified, the default is 100% sampled."
			fraction:    fractional.Runtime(c.GetRuntimeFraction(), fractional.Always),
			hostLiteral: c.GetHostRewriteLiteral(),
			// host_rewrite_literal implies disable_shadow_host_suffix_append.
			noSuffix: c.GetDisableShadowHostSuffixAppend() || c.GetHostRewriteLiteral() != "",
		})
	}
	return out
}

// shouldMirror is Envoy's FilterUtility::shouldShadow with no runtime
// override: random % denominator < numerator (featureEnabled).
func shouldMirror(p fractional.Percent, random uint64) bool {
	if p.Numerator >= p.Denominator {
		return true
	}
	if p.Numerator == 0 || p.Denominator == 0 {
		return false
	}
	return random%p.Denominator < p.Numerator
}

// mirrorCluster is Envoy's getShadowCluster: the policy's cluster, or the
// first value of its cluster_header ("" when absent or empty: no mirror).
func (m *mirrorPolicy) mirrorCluster(h *hhttp.Headers) string {
	if m.cluster != "" {
		return m.cluster
	}
	return h.Get(m.clusterHeader)
}

// mirrorHost is the :authority of a mirror of a request for host.
func (m *mirrorPolicy) mirrorHost(host string) string {
	switch {
	case m.hostLiteral != "":
		return m.hostLiteral
	case m.noSuffix || host == "":
		return host
	}
	return shadowHost(host)
}

// shadowHost is Envoy's shadow_writer_impl.cc newHost: the host split on
// ':' (empty pieces dropped, absl StringUtil::splitToken); exactly two
// pieces become "<host>-shadow:<port>", anything else gets "-shadow"
// appended. Envoy's rule is kept as is, including for bracketed IPv6
// literals, which it does not special-case.
func shadowHost(host string) string {
	var parts [2]string
	n := 0
	for piece := range strings.SplitSeq(host, ":") {
		if piece == "" {
			continue
		}
		if n < 2 {
			parts[n] = piece
		}
		n++
	}
	if n == 2 {
		return parts[0] + "-shadow:" + parts[1]
	}
	return host + "-shadow"
}

// mirrorTarget is one mirror a request will send.
type mirrorTarget struct {
	policy  *mirrorPolicy
	cluster string
}

// mirrorState is a Filter's mirrors: chosen with the request headers,
// sent when the request is complete.
type mirrorState struct {
	targets []mirrorTarget
	headers *hhttp.Headers // the request headers as forwarded, cloned
}

// selectMirrors is the part of Envoy's decodeHeaders that picks the active
// shadow policies; it runs after the route's header mutations and the
// attempt setup, so the mirror sees the headers the upstream sees.
func (f *Filter) selectMirrors(rt *Route, h *hhttp.Headers, endStream bool) {
	policies := rt.mirrorPolicies()
	if len(policies) == 0 || f.cfg.shadow == nil || h.Method() == "CONNECT" {
		return
	}
	for _, p := range policies {
		if !shouldMirror(p.fraction, rand.Uint64()) {
			continue
		}
		name := p.mirrorCluster(h)
		if name == "" {
			continue
		}
		f.mirror.targets = append(f.mirror.targets, mirrorTarget{policy: p, cluster: name})
	}
	if len(f.mirror.targets) == 0 {
		return
	}
	f.mirror.headers = h.Clone()
	if !endStream && !f.buffering {
		// The body is kept for the mirror as for retries (Envoy's
		// retry_shadow_buffer_limit_).
		f.buffering = true
		f.bufLimit = f.cb.BufferLimit()
		if n, ok := rt.RetryBufferLimit(); ok && n < f.bufLimit {
			f.bufLimit = n
		}
	}
}

// abandonMirrors drops the mirrors of a request whose body outgrew the
// buffer (the caller counts retry_or_shadow_abandoned).
func (f *Filter) abandonMirrors() {
	f.mirror.targets, f.mirror.headers = nil, nil
}

// sendMirrors sends the request's mirrors: Envoy's maybeDoShadowing, when
// the downstream request is complete.
func (f *Filter) sendMirrors() {
	targets, base := f.mirror.targets, f.mirror.headers
	f.mirror.targets, f.mirror.headers = nil, nil
	var body []byte
	if len(f.body) > 0 {
		body = append([]byte(nil), f.body...)
	}
	var trailers *hhttp.Headers
	if f.trailers != nil {
		// Envoy's maybeDoShadowing copies the request trailers too.
		trailers = f.trailers.Clone()
	}
	timeout := strconv.FormatInt(f.timeout.Milliseconds(), 10)
	host := base.Get(hhttp.Authority)
	for i, t := range targets {
		c := f.cfg.shadow.client(t.cluster)
		if c == nil {
			// Envoy's ShadowWriterImpl: "shadow cluster ... does not exist".
			continue
		}
		h, tr := base, trailers
		if i < len(targets)-1 {
			// Every mirror but the last gets its own copies.
			h = base.Clone()
			if tr != nil {
				tr = trailers.Clone()
			}
		}
		if ah := t.policy.mirrorHost(host); ah != host {
			h.Set(hhttp.Authority, ah)
		}
		// The mirror's timeout is the main request's route timeout
		// (Envoy: setTimeout(timeout_.global_timeout_)); the async router
		// reads and removes this header.
		h.Set(hdrUpstreamRqTimeout, timeout)
		go c.send(context.Background(), h, body, tr, 1)
	}
}

// shadowClients sends mirrors: one AsyncClient per shadow cluster, sharing
// one router config (stats "http.async-client.*", as Envoy's async client)
// and, as all traffic to a cluster, its hosts' connection pools. Safe for
// concurrent use.
type shadowClients struct {
	clusters *upstream.Manager
	store    *stats.Store

	once sync.Once
	cfg  *FilterConfig
	// byCluster maps a cluster name to its *AsyncClient; only names of
	// clusters that existed when first used are added, so it stays
	// bounded by the clusters ever configured.
	byCluster sync.Map
}

func newShadowClients(clusters *upstream.Manager, store *stats.Store) *shadowClients {
	if clusters == nil || store == nil {
		return nil
	}
	return &shadowClients{clusters: clusters, store: store}
}

// client returns the client of cluster, or nil when the cluster does not
// exist.
func (s *shadowClients) client(cluster string) *AsyncClient {
	if s.clusters.Cluster(cluster) == nil {
		return nil
	}
	if c, ok := s.byCluster.Load(cluster); ok {
		return c.(*AsyncClient)
	}
	s.once.Do(func() {
		s.cfg = &FilterConfig{
			Clusters: s.clusters,
			noRoute:  s.store.Counter("http.async-client.no_route"),
		}
	})
	rt, err := asyncRoute(cluster, 0, nil)
	if err != nil {
		return nil
	}
	c, _ := s.byCluster.LoadOrStore(cluster, &AsyncClient{cfg: s.cfg, route: rt, cluster: cluster})
	return c.(*AsyncClient)
}

// asyncRoute builds the one route of an async client: everything to
// cluster, with timeout (0: none) and retry policy.
func asyncRoute(cluster string, timeout time.Duration, retry *routev3.RetryPolicy) (*Route, error) {
	table, err := Build(&routev3.RouteConfiguration{
		Name: "async-client",
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "async-client",
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
					Timeout:          durationpb.New(timeout),
					RetryPolicy:      retry,
				}},
			}},
		}},
	}, BuildContext{Path: "async_client"})
	if err != nil {
		return nil, err
	}
	return table.VirtualHosts()[0].Routes()[0], nil
}
