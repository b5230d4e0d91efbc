package extauthz

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/fractional"
	"github.com/herald-proxy/herald/internal/grpcservice"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/matcher"
	"github.com/herald-proxy/herald/internal/router"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*extauthzv3.ExtAuthz]{
		Name:          Name,
		Config:        &extauthzv3.ExtAuthz{},
		PerRoute:      &extauthzv3.ExtAuthzPerRoute{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

// Envoy's strings (filters/common/ext_authz/ext_authz.h).
const (
	// Name is the filter's Envoy name.
	Name = "envoy.filters.http.ext_authz"
	// DetailsDenied is the response_code_details of a denied request.
	DetailsDenied = "ext_authz_denied"
	// DetailsError is the response_code_details of a failed check (and of
	// deny_at_disable).
	DetailsError = "ext_authz_error"
	// DetailsInvalid is the response_code_details of a response whose
	// mutations validate_mutations refused (a 500).
	DetailsInvalid = "ext_authz_invalid"

	// HeaderPartialBody tells the service whether the body it got is
	// partial ("true"/"false"); a client's own is never forwarded.
	HeaderPartialBody = "x-envoy-auth-partial-body"
	// HeaderToRemove lists, in an HTTP service's 200, request headers to
	// remove (comma separated).
	HeaderToRemove = "x-envoy-auth-headers-to-remove"
	// HeaderFailureModeAllowed is added to a request let through by
	// failure_mode_allow when failure_mode_allow_header_add.
	HeaderFailureModeAllowed = "x-envoy-auth-failure-mode-allowed"

	// defaultTimeout is the check timeout when the service sets none:
	// "gRPC service configuration (default timeout: 200ms)".
	defaultTimeout = 200 * time.Millisecond
)

// supported are the ExtAuthz fields herald interprets; any other set field
// is an error naming it.
var supported = []string{
	"grpc_service", "http_service", "transport_api_version", "failure_mode_allow",
	"failure_mode_allow_header_add", "with_request_body", "clear_route_cache",
	"clear_route_cache_headers", "status_on_error", "validate_mutations", "filter_enabled",
	"deny_at_disable", "stat_prefix", "allowed_headers", "disallowed_headers",
	"include_tls_session", "charge_cluster_response_stats", "encode_raw_headers",
	"max_denied_response_body_bytes", "emit_client_span",
}

var unsupportedIssues = map[string]string{
	"metadata_context_namespaces":             "#8",
	"typed_metadata_context_namespaces":       "#8",
	"route_metadata_context_namespaces":       "#8",
	"route_typed_metadata_context_namespaces": "#8",
	"filter_enabled_metadata":                 "#8",
	"include_peer_certificate":                "#8",
	"bootstrap_metadata_labels_key":           "#8",
	"decoder_header_mutation_rules":           "#8",
	"enable_dynamic_metadata_ingestion":       "#8",
	"filter_metadata":                         "#8",
	"emit_filter_state_stats":                 "#8",
	"enforce_response_header_limits":          "#8",
	"shadow_mode":                             "#8",
}

// Config is one built ExtAuthz. Immutable after Build.
type Config struct {
	name string // the filter's name in http_filters
	// client performs the check; exactly one of the gRPC or HTTP service.
	client checker

	failureModeAllow       bool
	failureModeAllowHeader bool
	statusOnError          int
	clearRouteCache        bool
	clearRouteCacheHeaders []string
	validateMutations      bool
	maxDeniedBody          int
	enabled                fractional.Percent
	denyAtDisable          bool
	includeTLSSession      bool
	encodeRawHeaders       bool
	body                   bodySettings // with_request_body; max 0 = off

	// allowed (nil: every header) and disallowed (nil: none) select the
	// request headers sent to the service.
	allowed, disallowed *keyMatcher

	// Envoy's ExtAuthzFilterStats: http.<stat_prefix>.ext_authz.[<filter stat_prefix>.].
	ok, denied, errorC, disabled, failureModeAllowed, invalid *stats.Counter
	pool                                                      *sync.Pool
}

// bodySettings is a compiled BufferSettings.
type bodySettings struct {
	on           bool
	max          int
	allowPartial bool
	packAsBytes  bool
}

func compileBody(b *extauthzv3.BufferSettings) bodySettings {
	if b == nil {
		return bodySettings{}
	}
	return bodySettings{on: true, max: int(b.GetMaxRequestBytes()), allowPartial: b.GetAllowPartialMessage(), packAsBytes: b.GetPackAsBytes()}
}

// PerRoute is a built ExtAuthzPerRoute. Immutable.
type PerRoute struct {
	disabled bool
	// checkSettings is false when the config is "disabled: false" only.
	checkSettings     bool
	contextExtensions map[string]string
	disableBody       bool
	body              bodySettings // with_request_body override; on=false when unset
}

// Build interprets the filter's ExtAuthz once per snapshot.
func Build(cfg *extauthzv3.ExtAuthz, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	path := ctx.Path
	errs := configerr.RejectUnlisted(cfg, path, unsupportedIssues, supported...)
	c := &Config{
		name:                   ctx.Name,
		failureModeAllow:       cfg.GetFailureModeAllow(),
		failureModeAllowHeader: cfg.GetFailureModeAllowHeaderAdd(),
		statusOnError:          403,
		clearRouteCache:        cfg.GetClearRouteCache(),
		clearRouteCacheHeaders: lowerAll(cfg.GetClearRouteCacheHeaders()),
		validateMutations:      cfg.GetValidateMutations(),
		maxDeniedBody:          int(cfg.GetMaxDeniedResponseBodyBytes()),
		// Envoy: "If this field is not specified, the filter will be
		// enabled for all requests."
		enabled:           fractional.Runtime(cfg.GetFilterEnabled(), fractional.Always),
		denyAtDisable:     cfg.GetDenyAtDisable().GetDefaultValue().GetValue(),
		includeTLSSession: cfg.GetIncludeTlsSession(),
		encodeRawHeaders:  cfg.GetEncodeRawHeaders(),
		body:              compileBody(cfg.GetWithRequestBody()),
		pool:              &sync.Pool{},
	}
	if c.name == "" {
		c.name = Name
	}
	// Envoy's toErrorCode: status_on_error defaults to 403 Forbidden.
	if s := int(cfg.GetStatusOnError().GetCode()); s > 0 {
		c.statusOnError = s
	}
	if cfg.GetTransportApiVersion() == corev3.ApiVersion_V2 {
		errs = append(errs, configerr.At(path+".transport_api_version", "only V3 is supported (Envoy removed V2)"))
	}
	// charge_cluster_response_stats (default true) charges
	// cluster.<route cluster>.upstream_rq_<code> for denials; herald does
	// not, so only false is accepted.
	if v := cfg.GetChargeClusterResponseStats(); v != nil && v.GetValue() {
		errs = append(errs, configerr.At(path+".charge_cluster_response_stats", "charge_cluster_response_stats: true is %s (set it to false)", configerr.NotSupported))
	}

	hs := cfg.GetHttpService()
	// Envoy (ext_authz.cc FilterConfig): the top-level allowed_headers and
	// the deprecated authorization_request.allowed_headers are exclusive;
	// an HTTP service always gets Authorization, Method, Path and Host.
	if cfg.GetAllowedHeaders() != nil && hs.GetAuthorizationRequest().GetAllowedHeaders() != nil {
		errs = append(errs, configerr.At(path+".allowed_headers", "Invalid duplicate configuration for allowed_headers."))
	}
	switch {
	case cfg.GetAllowedHeaders() != nil:
		c.allowed = compileKeys(cfg.GetAllowedHeaders(), hs != nil, path+".allowed_headers", &errs)
	case hs != nil:
		c.allowed = compileKeys(hs.GetAuthorizationRequest().GetAllowedHeaders(), true, path+".http_service.authorization_request.allowed_headers", &errs)
	}
	if cfg.GetDisallowedHeaders() != nil {
		c.disallowed = compileKeys(cfg.GetDisallowedHeaders(), false, path+".disallowed_headers", &errs)
	}

	clusters, _ := ctx.Clusters.(*upstream.Manager)
	switch {
	case cfg.GetGrpcService() != nil:
		svc, err := grpcservice.New(cfg.GetGrpcService(), clusters)
		if err != nil {
			errs = append(errs, configerr.At(path+".grpc_service", "%v", err))
		} else {
			c.client = newGRPCClient(svc)
		}
	case hs != nil:
		hc, err := newHTTPClient(hs, clusters, ctx.Stats, path+".http_service", &errs)
		if err == nil {
			c.client = hc
		} else {
			errs = append(errs, configerr.At(path+".http_service", "%v", err))
		}
	default:
		errs = append(errs, configerr.At(path, "one of grpc_service or http_service is required"))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	// Envoy's generateStats: statPrefixJoin(<http prefix>, "ext_authz." + stat_prefix).
	base := ctx.StatPrefix + "ext_authz."
	if p := cfg.GetStatPrefix(); p != "" {
		base += strings.TrimSuffix(p, ".") + "."
	}
	sc := ctx.Stats.Scope(base)
	c.ok = sc.Counter("ok")
	c.denied = sc.Counter("denied")
	c.errorC = sc.Counter("error")
	c.disabled = sc.Counter("disabled")
	c.failureModeAllowed = sc.Counter("failure_mode_allowed")
	c.invalid = sc.Counter("invalid")
	return c.newFilter, nil
}

var perRouteSupported = []string{"disabled", "check_settings"}
var checkSettingsSupported = []string{"context_extensions", "disable_request_body_buffering", "with_request_body", "emit_client_span"}

// BuildPerRoute interprets an ExtAuthzPerRoute; it returns *PerRoute.
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	pr := m.(*extauthzv3.ExtAuthzPerRoute)
	errs := configerr.RejectUnlisted(pr, ctx.Path, nil, perRouteSupported...)
	out := &PerRoute{disabled: pr.GetDisabled()}
	if cs := pr.GetCheckSettings(); cs != nil {
		p := ctx.Path + ".check_settings"
		errs = append(errs, configerr.RejectUnlisted(cs, p, map[string]string{"grpc_service": "#8", "http_service": "#8"}, checkSettingsSupported...)...)
		if cs.GetDisableRequestBodyBuffering() && cs.GetWithRequestBody() != nil {
			errs = append(errs, configerr.At(p, "only one of disable_request_body_buffering and with_request_body may be specified"))
		}
		out.checkSettings = true
		out.contextExtensions = cs.GetContextExtensions()
		out.disableBody = cs.GetDisableRequestBodyBuffering()
		out.body = compileBody(cs.GetWithRequestBody())
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// keyMatcher matches header names against a ListStringMatcher. Immutable.
type keyMatcher struct {
	ms []matcher.String
	// not inverts the match (allowed_client_headers unset: every header
	// but Host).
	not bool
}

func (k *keyMatcher) matches(name string) bool {
	hit := false
	for i := range k.ms {
		if k.ms[i].Match(name) {
			hit = true
			break
		}
	}
	return hit != k.not
}

// httpDefaultKeys are the request headers an HTTP service always gets
// (CheckRequestUtils::toRequestMatchers with add_http_headers).
var httpDefaultKeys = []string{"authorization", hhttp.Method, hhttp.Path, hhttp.Authority}

func compileKeys(l *matcherv3.ListStringMatcher, addHTTP bool, path string, errs *configerr.List) *keyMatcher {
	k := &keyMatcher{}
	for i, p := range l.GetPatterns() {
		if m, ok := matcher.NewString(p, path+".patterns["+strconv.Itoa(i)+"]", errs); ok {
			k.ms = append(k.ms, m)
		}
	}
	if addHTTP {
		k.ms = append(k.ms, exactKeys(httpDefaultKeys)...)
	}
	return k
}

func exactKeys(keys []string) []matcher.String {
	var out []matcher.String
	for _, key := range keys {
		var errs configerr.List
		m, _ := matcher.NewString(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: key}}, "", &errs)
		out = append(out, m)
	}
	return out
}

func lowerAll(in []string) []string {
	if len(in) == 0 {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = strings.ToLower(s)
	}
	return out
}

// literal reports whether v holds no command operator; "%%" is a "%".
func literal(v string) (string, bool) {
	if !strings.Contains(v, "%") {
		return v, true
	}
	r := strings.ReplaceAll(v, "%%", "")
	if strings.Contains(r, "%") {
		return "", false
	}
	return strings.ReplaceAll(v, "%%", "%"), true
}

var errNoCluster = errors.New("server_uri.cluster: required")

// newHTTPClient builds the http_service client.
func newHTTPClient(hs *extauthzv3.HttpService, clusters *upstream.Manager, store *stats.Store, path string, errs *configerr.List) (*httpClient, error) {
	*errs = append(*errs, configerr.RejectUnlisted(hs, path, map[string]string{"retry_policy": "#8"},
		"server_uri", "path_prefix", "path_override", "authorization_request", "authorization_response")...)
	if ar := hs.GetAuthorizationRequest(); ar != nil {
		*errs = append(*errs, configerr.RejectUnlisted(ar, path+".authorization_request", nil, "allowed_headers", "headers_to_add")...)
	}
	ar := hs.GetAuthorizationResponse()
	if ar != nil {
		*errs = append(*errs, configerr.RejectUnlisted(ar, path+".authorization_response", map[string]string{"dynamic_metadata_from_headers": "#8"},
			"allowed_upstream_headers", "allowed_upstream_headers_to_append", "allowed_client_headers", "allowed_client_headers_on_success")...)
	}
	if hs.GetPathPrefix() != "" && hs.GetPathOverride() != "" {
		*errs = append(*errs, configerr.At(path, "only one of path_prefix or path_override may be set"))
	}
	cluster := hs.GetServerUri().GetCluster()
	if cluster == "" {
		return nil, errNoCluster
	}
	hc := &httpClient{pathPrefix: hs.GetPathPrefix(), pathOverride: hs.GetPathOverride()}
	for i, h := range hs.GetAuthorizationRequest().GetHeadersToAdd() {
		v, ok := literal(h.GetValue())
		if !ok {
			*errs = append(*errs, configerr.At(path+".authorization_request.headers_to_add["+strconv.Itoa(i)+"].value", "command operators in header values are %s", configerr.NotSupported))
			continue
		}
		hc.headersToAdd = append(hc.headersToAdd, hhttp.HeaderField{Name: strings.ToLower(h.GetKey()), Value: v})
	}
	rp := path + ".authorization_response."
	hc.upstream = compileKeys(ar.GetAllowedUpstreamHeaders(), false, rp+"allowed_upstream_headers", errs)
	hc.upstreamAppend = compileKeys(ar.GetAllowedUpstreamHeadersToAppend(), false, rp+"allowed_upstream_headers_to_append", errs)
	hc.clientOnSuccess = compileKeys(ar.GetAllowedClientHeadersOnSuccess(), false, rp+"allowed_client_headers_on_success", errs)
	// Envoy (ClientConfig::toClientMatchers): unset, every header but Host
	// goes to the client; set, the list plus Status, Content-Length,
	// WWW-Authenticate and Location.
	if len(ar.GetAllowedClientHeaders().GetPatterns()) == 0 {
		hc.client = &keyMatcher{ms: exactKeys([]string{hhttp.Authority, "host"}), not: true}
	} else {
		hc.client = compileKeys(ar.GetAllowedClientHeaders(), false, rp+"allowed_client_headers", errs)
		hc.client.ms = append(hc.client.ms, exactKeys([]string{hhttp.Status, "content-length", "www-authenticate", "location"})...)
	}
	timeout := hs.GetServerUri().GetTimeout().AsDuration()
	ac, err := router.NewAsyncClient(clusters, store, cluster, router.AsyncOptions{Timeout: timeout})
	if err != nil {
		return nil, err
	}
	hc.async = ac
	return hc, nil
}
