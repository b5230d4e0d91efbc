package router

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/matcher"
)

// defaultMaxDirectResponseBodySize is Envoy's default for
// RouteConfiguration.max_direct_response_body_size_bytes (4 KiB,
// router/config_impl.cc DEFAULT_MAX_DIRECT_RESPONSE_BODY_SIZE_BYTES).
const defaultMaxDirectResponseBodySize = 4096

// BuildContext is what Build needs besides the route configuration.
type BuildContext struct {
	// Path is the YAML path of the route configuration, prefixed to every
	// error, e.g. "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config".
	Path string
	// ClusterExists, when set, checks every cluster and weighted cluster a
	// route names, as Envoy does for route configs with validate_clusters
	// (default true for a static route_config, false for RDS: the caller
	// passes nil to skip). An explicit validate_clusters: false skips it too.
	ClusterExists func(name string) bool
	// FilterContext is handed to every filter's BuildPerRoute, with Path set
	// to the typed_per_filter_config entry.
	FilterContext httpfilter.BuildContext
}

// Table is a compiled RouteConfiguration (Envoy's ConfigImpl). Immutable
// after Build; safe for concurrent use.
type Table struct {
	name     string
	vhosts   []*VirtualHost
	exact    map[string]*VirtualHost
	suffixes []wildcardLevel // "*.foo.com", "*-bar.foo.com": longest first
	prefixes []wildcardLevel // "foo.*": longest first
	catchAll *VirtualHost    // "*"

	ignorePortInHostMatching bool
	ignorePathParameters     bool
	mostSpecificWins         bool

	internalOnly      []string
	requestMutations  headerMutations
	responseMutations headerMutations
	perFilter         perFilterConfigs
	metadata          *corev3.Metadata
	clusters          []string
	mirrors           []*mirrorPolicy // request_mirror_policies (mirror_route.go)
}

// wildcardLevel holds the wildcard domains whose fixed part is n bytes long,
// keyed by that part (".foo.com" for "*.foo.com", "foo." for "foo.*").
type wildcardLevel struct {
	n     int
	hosts map[string]*VirtualHost
}

// VirtualHost is a compiled route.v3.VirtualHost. Immutable after Build.
type VirtualHost struct {
	name              string
	table             *Table
	domains           []string
	routes            []*Route
	steps             []matchStep // routes compiled for Match, in order
	requestMutations  headerMutations
	responseMutations headerMutations
	perFilter         perFilterConfigs
	metadata          *corev3.Metadata
	retry             vhostRetry // retry_policy and related fields (retry_policy.go)
	ext               vhostExt   // mirror policies, hedge policy (mirror_route.go)

	rateLimits rateLimitPolicy // rate_limits (ratelimit.go)
}

// Name returns the virtual host's name.
func (v *VirtualHost) Name() string { return v.name }

// Domains returns the virtual host's domains, lowercased.
func (v *VirtualHost) Domains() []string { return v.domains }

// Routes returns the routes in match order.
func (v *VirtualHost) Routes() []*Route { return v.routes }

// Metadata returns the virtual host's metadata, or nil.
func (v *VirtualHost) Metadata() *corev3.Metadata { return v.metadata }

// Table returns the table the virtual host belongs to.
func (v *VirtualHost) Table() *Table { return v.table }

// Name returns the route configuration's name.
func (t *Table) Name() string { return t.name }

// VirtualHosts returns the virtual hosts in configuration order.
func (t *Table) VirtualHosts() []*VirtualHost { return t.vhosts }

// Clusters returns every cluster name the table's routes and weighted
// clusters name, sorted and unique (cluster_header targets are unknown until
// a request arrives and are not included).
func (t *Table) Clusters() []string { return t.clusters }

// InternalOnlyHeaders returns the lowercased internal_only_headers: the
// connection manager strips them from requests from external clients.
func (t *Table) InternalOnlyHeaders() []string { return t.internalOnly }

// Metadata returns the route configuration's metadata, or nil.
func (t *Table) Metadata() *corev3.Metadata { return t.metadata }

// MostSpecificHeaderMutationsWins reports the option of that name.
func (t *Table) MostSpecificHeaderMutationsWins() bool { return t.mostSpecificWins }

// ApplyResponseHeaders applies only the route configuration's
// response_headers_to_remove and response_headers_to_add, for responses
// that have no route (Route.ApplyResponseHeaders covers routed ones).
func (t *Table) ApplyResponseHeaders(h *hhttp.Headers, ctx HeaderValueContext) {
	t.responseMutations.apply(h, ctx, true)
}

// builder carries what every level of Build needs.
type builder struct {
	ctx      BuildContext
	errs     configerr.List
	maxBody  int
	validate bool
	clusters map[string]struct{}
	table    *Table
}

// Build compiles cfg. It returns a configerr.List naming every problem with
// its full field path; cfg is expected to have passed Validate() already.
func Build(cfg *routev3.RouteConfiguration, ctx BuildContext) (*Table, error) {
	t := &Table{
		name:                     cfg.GetName(),
		ignorePortInHostMatching: cfg.GetIgnorePortInHostMatching(),
		ignorePathParameters:     cfg.GetIgnorePathParametersInPathMatching(),
		mostSpecificWins:         cfg.GetMostSpecificHeaderMutationsWins(),
		metadata:                 cfg.GetMetadata(),
	}
	b := &builder{
		ctx:      ctx,
		maxBody:  defaultMaxDirectResponseBodySize,
		validate: ctx.ClusterExists != nil && (cfg.GetValidateClusters() == nil || cfg.GetValidateClusters().GetValue()),
		clusters: map[string]struct{}{},
		table:    t,
	}
	p := ctx.Path
	checkUnsupported(cfg, p, &b.errs)
	if cfg.GetMaxDirectResponseBodySizeBytes() != nil {
		b.maxBody = int(cfg.GetMaxDirectResponseBodySizeBytes().GetValue())
	}
	for _, hdr := range cfg.GetInternalOnlyHeaders() {
		t.internalOnly = append(t.internalOnly, strings.ToLower(hdr))
	}
	t.requestMutations = buildHeaderMutations(cfg.GetRequestHeadersToAdd(), cfg.GetRequestHeadersToRemove(),
		join(p, "request_headers_to_add"), join(p, "request_headers_to_remove"), &b.errs)
	t.responseMutations = buildHeaderMutations(cfg.GetResponseHeadersToAdd(), cfg.GetResponseHeadersToRemove(),
		join(p, "response_headers_to_add"), join(p, "response_headers_to_remove"), &b.errs)
	t.perFilter = buildPerFilterConfigs(cfg.GetTypedPerFilterConfig(), join(p, "typed_per_filter_config"), ctx.FilterContext, &b.errs)
	b.buildTableExt(t, cfg, p)

	// Envoy's RouteMatcher: domains are lowercased; "*" is the catch-all (one
	// only); a leading '*' makes a suffix wildcard, a trailing '*' a prefix
	// wildcard; a domain may appear in one virtual host only.
	firstSeen := map[string]int{}
	suffixes := map[int]map[string]*VirtualHost{}
	prefixes := map[int]map[string]*VirtualHost{}
	for i, vhc := range cfg.GetVirtualHosts() {
		vp := fmt.Sprintf("%s[%d]", join(p, "virtual_hosts"), i)
		vh := b.buildVirtualHost(vhc, vp)
		t.vhosts = append(t.vhosts, vh)
		for j, d := range vh.domains {
			dp := fmt.Sprintf("%s.domains[%d]", vp, j)
			if first, dup := firstSeen[d]; dup {
				if d == "*" {
					b.errs = append(b.errs, configerr.At(dp, "only a single wildcard domain is permitted in route %q (first in virtual_hosts[%d])", t.name, first))
				} else {
					b.errs = append(b.errs, configerr.At(dp, "only unique values for domains are permitted: duplicate entry of domain %q (first in virtual_hosts[%d])", d, first))
				}
				continue
			}
			firstSeen[d] = i
			switch {
			case d == "*":
				t.catchAll = vh
			case strings.HasPrefix(d, "*"):
				addWildcard(suffixes, d[1:], vh)
			case strings.HasSuffix(d, "*"):
				addWildcard(prefixes, d[:len(d)-1], vh)
			default:
				if t.exact == nil {
					t.exact = map[string]*VirtualHost{}
				}
				t.exact[d] = vh
			}
		}
	}
	t.suffixes = sortedLevels(suffixes)
	t.prefixes = sortedLevels(prefixes)
	for c := range b.clusters {
		t.clusters = append(t.clusters, c)
	}
	sort.Strings(t.clusters)
	if err := b.errs.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

func addWildcard(levels map[int]map[string]*VirtualHost, fixed string, vh *VirtualHost) {
	m := levels[len(fixed)]
	if m == nil {
		m = map[string]*VirtualHost{}
		levels[len(fixed)] = m
	}
	m[fixed] = vh
}

func sortedLevels(levels map[int]map[string]*VirtualHost) []wildcardLevel {
	out := make([]wildcardLevel, 0, len(levels))
	for n, m := range levels {
		out = append(out, wildcardLevel{n: n, hosts: m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n > out[j].n })
	return out
}

func (b *builder) buildVirtualHost(cfg *routev3.VirtualHost, p string) *VirtualHost {
	checkUnsupported(cfg, p, &b.errs)
	vh := &VirtualHost{name: cfg.GetName(), table: b.table, metadata: cfg.GetMetadata()}
	for _, d := range cfg.GetDomains() {
		vh.domains = append(vh.domains, strings.ToLower(d))
	}
	vh.requestMutations = buildHeaderMutations(cfg.GetRequestHeadersToAdd(), cfg.GetRequestHeadersToRemove(),
		p+".request_headers_to_add", p+".request_headers_to_remove", &b.errs)
	vh.responseMutations = buildHeaderMutations(cfg.GetResponseHeadersToAdd(), cfg.GetResponseHeadersToRemove(),
		p+".response_headers_to_add", p+".response_headers_to_remove", &b.errs)
	vh.perFilter = buildPerFilterConfigs(cfg.GetTypedPerFilterConfig(), p+".typed_per_filter_config", b.ctx.FilterContext, &b.errs)
	vh.retry = buildVhostRetry(cfg, p, &b.errs)
	b.buildVhostExt(vh, cfg, p)
	for i, rc := range cfg.GetRoutes() {
		if r := b.buildRoute(rc, vh, fmt.Sprintf("%s.routes[%d]", p, i)); r != nil {
			vh.routes = append(vh.routes, r)
		}
	}
	vh.steps = compileSteps(vh.routes)
	buildVhostRateLimits(vh, cfg, p, &b.errs)
	return vh
}

// Match returns the first route of the selected virtual host that matches
// h, or nil; the virtual host is returned even when no route matches (nil
// when none is selected). It allocates nothing for prefix, path, regex and
// single-valued header matchers.
//
// Envoy (RouteMatcher::route) also returns no route when x-forwarded-proto
// is missing; herald does not, since it needs that header only for
// require_tls, which it rejects at load.
func (t *Table) Match(h *hhttp.Headers) (*Route, *VirtualHost) {
	vh := t.findVirtualHost(h)
	if vh == nil {
		return nil, nil
	}
	fullPath, ok := h.Lookup(hhttp.Path)
	if !ok {
		// Only connect_matcher routes match requests without :path.
		if h.Method() == methodConnect {
			return vh.matchConnect(h), vh
		}
		return nil, vh
	}
	path := stripQueryAndFragment(fullPath)
	if t.ignorePathParameters {
		// Envoy: ignore_path_parameters_in_path_matching cuts at the first ';'.
		if i := strings.IndexByte(path, ';'); i >= 0 {
			path = path[:i]
		}
	}
	for i := range vh.steps {
		s := &vh.steps[i]
		if s.block != nil {
			if r := s.block.match(path); r != nil {
				return r, vh
			}
			continue
		}
		if s.route.match.matches(h, fullPath, path) {
			return s.route, vh
		}
	}
	return nil, vh
}

// findVirtualHost is Envoy's RouteMatcher::findVirtualHost: exact domain,
// then the longest suffix wildcard, then the longest prefix wildcard, then
// "*". The host is lowercased; its port is part of it unless
// ignore_port_in_host_matching is set (so "example.com:8080" matches the
// domain "example.com:8080", not "example.com"; the connection manager's
// strip_matching_host_port / strip_any_host_port remove the port before
// routing, see StripHostPort).
func (t *Table) findVirtualHost(h *hhttp.Headers) *VirtualHost {
	if t.exact == nil && len(t.suffixes) == 0 && len(t.prefixes) == 0 {
		return t.catchAll
	}
	host, ok := h.Lookup(hhttp.Authority)
	if !ok {
		return nil
	}
	if t.ignorePortInHostMatching {
		if i := portStart(host); i >= 0 {
			host = host[:i]
		}
	}
	var buf [256]byte
	lower := buf[:0]
	for i := 0; i < len(host); i++ {
		lower = append(lower, matcher.LowerASCII(host[i]))
	}
	return t.vhostFor(lower)
}

func (t *Table) vhostFor(host []byte) *VirtualHost {
	if vh, ok := t.exact[string(host)]; ok {
		return vh
	}
	// Envoy: a wildcard must be shorter than the host ("*.foo.com" does not
	// match ".foo.com"; "foo.*" does not match "foo.").
	for _, l := range t.suffixes {
		if l.n >= len(host) {
			continue
		}
		if vh, ok := l.hosts[string(host[len(host)-l.n:])]; ok {
			return vh
		}
	}
	for _, l := range t.prefixes {
		if l.n >= len(host) {
			continue
		}
		if vh, ok := l.hosts[string(host[:l.n])]; ok {
			return vh
		}
	}
	return t.catchAll
}

// portStart is Envoy's HeaderUtility::getPortStart: the index of the ':'
// before the port, or -1 (IPv6 literals are bracketed).
func portStart(host string) int {
	i := strings.LastIndexByte(host, ':')
	if i < 0 {
		return -1
	}
	if v6 := strings.LastIndexByte(host, ']'); v6 >= 0 && v6 > i {
		return -1
	}
	return i
}

// PortStripping is the connection manager's strip_matching_host_port /
// strip_any_host_port choice.
type PortStripping int

const (
	// StripNoPort leaves :authority alone (Envoy's default).
	StripNoPort PortStripping = iota
	// StripMatchingPort removes the port when it equals the listener's port.
	StripMatchingPort
	// StripAnyPort removes any port.
	StripAnyPort
)

// StripHostPort removes the port from h's :authority as Envoy's
// HeaderUtility::stripPortFromHost does for the connection manager
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto,
// strip_matching_host_port): only a numeric port is removed, and with
// StripMatchingPort only when it equals listenerPort. It returns the removed
// port. The connection manager calls it before routing; the rewritten
// :authority also goes upstream.
func StripHostPort(h *hhttp.Headers, mode PortStripping, listenerPort uint32) (uint32, bool) {
	if mode == StripNoPort {
		return 0, false
	}
	host, ok := h.Lookup(hhttp.Authority)
	if !ok {
		return 0, false
	}
	i := portStart(host)
	if i < 0 {
		return 0, false
	}
	port, err := strconv.ParseUint(host[i+1:], 10, 32)
	if err != nil {
		return 0, false
	}
	if mode == StripMatchingPort && uint32(port) != listenerPort {
		return 0, false
	}
	h.Set(hhttp.Authority, host[:i])
	return uint32(port), true
}

// join appends a field to a path that may be empty.
func join(p, field string) string {
	if p == "" {
		return field
	}
	return p + "." + field
}
