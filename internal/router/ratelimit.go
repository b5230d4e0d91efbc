package router

import (
	"fmt"
	"net/netip"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/matcher"
)

// Rate limit actions: the descriptors a route or virtual host's rate_limits
// produce for a request, Envoy's Router::RateLimitPolicyImpl
// (source/common/router/router_ratelimit.cc).
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-ratelimit

// MaxRateLimitStage is the highest stage a rate limit configuration or
// filter may use (Envoy's RateLimitPolicyImpl::MAX_STAGE_NUMBER).
const MaxRateLimitStage = 10

// RateLimitEntry is one descriptor entry.
type RateLimitEntry struct {
	Key, Value string
}

// RateLimitOverride is a descriptor's limit override
// (RateLimit.limit): requests per unit.
type RateLimitOverride struct {
	RequestsPerUnit uint32
	Unit            typev3.RateLimitUnit
}

// RateLimitDescriptor is one descriptor sent to the rate limit service.
type RateLimitDescriptor struct {
	// Entries are the actions' entries in order; possibly empty when every
	// action skipped its entry (request_headers with skip_if_absent), which
	// Envoy still sends.
	Entries []RateLimitEntry
	// Limit is the override, or nil; it points into the compiled config and
	// must not be changed.
	Limit *RateLimitOverride
}

// RateLimitRequest is what actions read to produce descriptors.
type RateLimitRequest struct {
	// Headers are the request headers.
	Headers *hhttp.Headers
	// Remote is the downstream remote address after x-forwarded-for
	// processing (remote_address, masked_remote_address); the zero value
	// makes those actions produce no descriptor.
	Remote netip.AddrPort
	// LocalCluster is the local service cluster (--service-cluster), for
	// source_cluster.
	LocalCluster string
	// DestinationCluster is the cluster the route sends the request to, for
	// destination_cluster.
	DestinationCluster string
}

// VhRateLimits says whether a route's descriptors include its virtual
// host's rate_limits (the rate limit filter's
// RateLimitPerRoute.vh_rate_limits).
type VhRateLimits uint8

const (
	// VhRateLimitsOverride uses the virtual host's rate_limits only when
	// the route has none (Envoy's default).
	VhRateLimitsOverride VhRateLimits = iota
	// VhRateLimitsInclude adds the virtual host's rate_limits after the
	// route's.
	VhRateLimitsInclude
	// VhRateLimitsIgnore never uses the virtual host's rate_limits.
	VhRateLimitsIgnore
)

// rateLimitPolicy is a compiled list of RateLimit. Immutable after Build.
type rateLimitPolicy struct {
	entries []rateLimitEntry
	// usesDestination is true when an action is destination_cluster.
	usesDestination bool
}

// rateLimitEntry is one compiled RateLimit.
type rateLimitEntry struct {
	stage   uint32
	actions []rateLimitAction
	limit   *RateLimitOverride
}

type rateLimitActionKind uint8

const (
	rlSourceCluster rateLimitActionKind = iota + 1
	rlDestinationCluster
	rlRequestHeaders
	rlRemoteAddress
	rlMaskedRemoteAddress
	rlGenericKey
	rlHeaderValueMatch
)

// rateLimitAction is one compiled RateLimit.Action.
type rateLimitAction struct {
	kind         rateLimitActionKind
	key          string // descriptor key (request_headers, generic_key, header_value_match)
	value        string // descriptor value (generic_key, header_value_match)
	header       string // request_headers.header_name, lowercased
	skipIfAbsent bool
	expectMatch  bool
	headers      []matcher.Header
	v4Mask       int
	v6Mask       int
}

// Envoy's fixed descriptor keys (router_ratelimit.cc).
const (
	rlKeySourceCluster       = "source_cluster"
	rlKeyDestinationCluster  = "destination_cluster"
	rlKeyRemoteAddress       = "remote_address"
	rlKeyMaskedRemoteAddress = "masked_remote_address"
	rlKeyGenericKey          = "generic_key"
	rlKeyHeaderMatch         = "header_match"
)

// rateLimitIssue is the issue that tracks rate limit actions herald does
// not implement yet.
const rateLimitIssue = " (#8)"

func buildRateLimitPolicy(list []*routev3.RateLimit, path string, errs *configerr.List) rateLimitPolicy {
	var pol rateLimitPolicy
	for i, rl := range list {
		p := fmt.Sprintf("%s[%d]", path, i)
		*errs = append(*errs, configerr.RejectUnlisted(rl, p, map[string]string{
			"hits_addend": "#8", "apply_on_stream_done": "#8", "x_ratelimit_option": "#8",
		}, "stage", "disable_key", "actions", "limit")...)
		e := rateLimitEntry{stage: rl.GetStage().GetValue()}
		if e.stage > MaxRateLimitStage {
			*errs = append(*errs, configerr.At(p+".stage", "stage must be at most %d", MaxRateLimitStage))
		}
		// disable_key: Envoy disables the entry when the runtime key
		// ratelimit.<disable_key>.http_filter_enabled is under 100%;
		// herald has no runtime, so the default (enabled) always applies.
		if lim := rl.GetLimit(); lim != nil {
			switch o := lim.GetOverrideSpecifier().(type) {
			case *routev3.RateLimit_Override_RateLimit:
				e.limit = &RateLimitOverride{RequestsPerUnit: o.RateLimit.GetRequestsPerUnit(), Unit: o.RateLimit.GetUnit()}
			case *routev3.RateLimit_Override_DynamicMetadata_:
				*errs = append(*errs, configerr.At(p+".limit.dynamic_metadata",
					"dynamic_metadata is %s (herald has no dynamic metadata)%s", configerr.NotSupported, rateLimitIssue))
			default:
				*errs = append(*errs, configerr.At(p+".limit", "one of dynamic_metadata or rate_limit is required"))
			}
		}
		for j, a := range rl.GetActions() {
			ap := fmt.Sprintf("%s.actions[%d]", p, j)
			act, ok := buildRateLimitAction(a, ap, errs)
			if !ok {
				continue
			}
			if act.kind == rlDestinationCluster {
				pol.usesDestination = true
			}
			e.actions = append(e.actions, act)
		}
		pol.entries = append(pol.entries, e)
	}
	return pol
}

func buildRateLimitAction(a *routev3.RateLimit_Action, p string, errs *configerr.List) (rateLimitAction, bool) {
	switch s := a.GetActionSpecifier().(type) {
	case *routev3.RateLimit_Action_SourceCluster_:
		return rateLimitAction{kind: rlSourceCluster}, true
	case *routev3.RateLimit_Action_DestinationCluster_:
		return rateLimitAction{kind: rlDestinationCluster}, true
	case *routev3.RateLimit_Action_RequestHeaders_:
		rh := s.RequestHeaders
		return rateLimitAction{
			kind:         rlRequestHeaders,
			header:       strings.ToLower(rh.GetHeaderName()),
			key:          rh.GetDescriptorKey(),
			skipIfAbsent: rh.GetSkipIfAbsent(),
		}, true
	case *routev3.RateLimit_Action_RemoteAddress_:
		return rateLimitAction{kind: rlRemoteAddress}, true
	case *routev3.RateLimit_Action_MaskedRemoteAddress_:
		m := s.MaskedRemoteAddress
		// Envoy: v4_prefix_mask_len defaults to 32, v6 to 128.
		act := rateLimitAction{kind: rlMaskedRemoteAddress, v4Mask: 32, v6Mask: 128}
		if v := m.GetV4PrefixMaskLen(); v != nil {
			act.v4Mask = int(v.GetValue())
		}
		if v := m.GetV6PrefixMaskLen(); v != nil {
			act.v6Mask = int(v.GetValue())
		}
		if act.v4Mask > 32 {
			*errs = append(*errs, configerr.At(p+".masked_remote_address.v4_prefix_mask_len", "must be at most 32"))
		}
		if act.v6Mask > 128 {
			*errs = append(*errs, configerr.At(p+".masked_remote_address.v6_prefix_mask_len", "must be at most 128"))
		}
		return act, true
	case *routev3.RateLimit_Action_GenericKey_:
		g := s.GenericKey
		if g.GetDefaultValue() != "" {
			// Only meaningful with the formatter runtime flag, which herald
			// does not have.
			*errs = append(*errs, configerr.At(p+".generic_key.default_value", "default_value is %s%s", configerr.NotSupported, rateLimitIssue))
		}
		// Envoy: descriptor_key defaults to "generic_key"; descriptor_value
		// is a literal unless a runtime flag enables formatters (off by
		// default).
		act := rateLimitAction{kind: rlGenericKey, key: rlKeyGenericKey, value: g.GetDescriptorValue()}
		if k := g.GetDescriptorKey(); k != "" {
			act.key = k
		}
		return act, true
	case *routev3.RateLimit_Action_HeaderValueMatch_:
		hv := s.HeaderValueMatch
		if hv.GetDefaultValue() != "" {
			*errs = append(*errs, configerr.At(p+".header_value_match.default_value", "default_value is %s%s", configerr.NotSupported, rateLimitIssue))
		}
		// Envoy: descriptor_key defaults to "header_match", expect_match to
		// true.
		act := rateLimitAction{kind: rlHeaderValueMatch, key: rlKeyHeaderMatch, value: hv.GetDescriptorValue(), expectMatch: true}
		if k := hv.GetDescriptorKey(); k != "" {
			act.key = k
		}
		if hv.GetExpectMatch() != nil {
			act.expectMatch = hv.GetExpectMatch().GetValue()
		}
		for i, hm := range hv.GetHeaders() {
			if h, ok := matcher.NewHeader(hm, fmt.Sprintf("%s.header_value_match.headers[%d]", p, i), errs); ok {
				act.headers = append(act.headers, h)
			}
		}
		return act, true
	case nil:
		*errs = append(*errs, configerr.At(p, "an action is required"))
		return rateLimitAction{}, false
	default:
		// query_parameters, dynamic_metadata, metadata, extension,
		// query_parameter_value_match, remote_address_match.
		name := "action"
		a.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
			name = string(fd.Name())
			return false
		})
		*errs = append(*errs, configerr.At(p+"."+name, "%s is %s%s", name, configerr.NotSupported, rateLimitIssue))
		return rateLimitAction{}, false
	}
}

// buildRouteRateLimits compiles a route action's rate_limits and
// include_vh_rate_limits. r's cluster specifier must be built already:
// destination_cluster is refused with weighted_clusters, since herald's
// router picks the weighted cluster after the rate limit filter ran.
func buildRouteRateLimits(r *Route, a *routev3.RouteAction, p string, errs *configerr.List) {
	r.rateLimits = buildRateLimitPolicy(a.GetRateLimits(), p+".rate_limits", errs)
	r.includeVhRateLimits = a.GetIncludeVhRateLimits().GetValue()
	if r.rateLimits.usesDestination && len(r.weighted) > 0 {
		*errs = append(*errs, configerr.At(p+".rate_limits",
			"destination_cluster with weighted_clusters is %s%s", configerr.NotSupported, rateLimitIssue))
	}
}

// buildVhostRateLimits compiles a virtual host's rate_limits; vh's routes
// must be built already.
func buildVhostRateLimits(vh *VirtualHost, cfg *routev3.VirtualHost, p string, errs *configerr.List) {
	vh.rateLimits = buildRateLimitPolicy(cfg.GetRateLimits(), p+".rate_limits", errs)
	if !vh.rateLimits.usesDestination {
		return
	}
	for _, r := range vh.routes {
		if len(r.weighted) > 0 {
			*errs = append(*errs, configerr.At(p+".rate_limits",
				"destination_cluster with weighted_clusters (route %q) is %s%s", r.name, configerr.NotSupported, rateLimitIssue))
			return
		}
	}
}

// HasRateLimits reports whether the route or its virtual host has any
// rate_limits: a filter may skip all work for routes without.
func (r *Route) HasRateLimits() bool {
	return len(r.rateLimits.entries) > 0 || (r.vhost != nil && len(r.vhost.rateLimits.entries) > 0)
}

// AppendRateLimitDescriptors appends to dst the descriptors of the route's
// rate_limits for stage, then, as vh says, its virtual host's, and returns
// dst: Envoy's Filter::initiateCall. A route with include_vh_rate_limits
// always includes the virtual host's. Routes that do not forward
// (direct_response, redirect) have none.
//
// It reuses the Entries arrays of dst's spare capacity, so a caller that
// keeps dst between requests allocates nothing but the remote address
// strings.
func (r *Route) AppendRateLimitDescriptors(dst []RateLimitDescriptor, stage uint32, vh VhRateLimits, req *RateLimitRequest) []RateLimitDescriptor {
	if r.kind != ActionCluster {
		return dst
	}
	dst = r.rateLimits.appendDescriptors(dst, stage, req)
	if r.vhost == nil {
		return dst
	}
	if r.includeVhRateLimits {
		vh = VhRateLimitsInclude
	}
	switch vh {
	case VhRateLimitsInclude:
		dst = r.vhost.rateLimits.appendDescriptors(dst, stage, req)
	case VhRateLimitsOverride:
		if len(r.rateLimits.entries) == 0 {
			dst = r.vhost.rateLimits.appendDescriptors(dst, stage, req)
		}
	case VhRateLimitsIgnore:
	}
	return dst
}

func (pol *rateLimitPolicy) appendDescriptors(dst []RateLimitDescriptor, stage uint32, req *RateLimitRequest) []RateLimitDescriptor {
	for i := range pol.entries {
		e := &pol.entries[i]
		if e.stage != stage {
			continue
		}
		n := len(dst)
		if n < cap(dst) {
			dst = dst[:n+1]
		} else {
			dst = append(dst, RateLimitDescriptor{})
		}
		d := &dst[n]
		d.Entries, d.Limit = d.Entries[:0], e.limit
		ok := true
		for j := range e.actions {
			if d.Entries, ok = e.actions[j].appendEntry(d.Entries, req); !ok {
				break
			}
		}
		if !ok {
			// Envoy: "If an action cannot append a descriptor entry, no
			// descriptor is generated for the configuration."
			dst = dst[:n]
		}
	}
	return dst
}

// appendEntry appends the action's entry; false means the action produced
// none and the whole descriptor is dropped.
func (a *rateLimitAction) appendEntry(dst []RateLimitEntry, req *RateLimitRequest) ([]RateLimitEntry, bool) {
	switch a.kind {
	case rlSourceCluster:
		return append(dst, RateLimitEntry{Key: rlKeySourceCluster, Value: req.LocalCluster}), true
	case rlDestinationCluster:
		return append(dst, RateLimitEntry{Key: rlKeyDestinationCluster, Value: req.DestinationCluster}), true
	case rlRequestHeaders:
		// Envoy uses the first value; a missing header drops the
		// descriptor, or only this entry with skip_if_absent.
		v, ok := req.Headers.Lookup(a.header)
		if !ok {
			return dst, a.skipIfAbsent
		}
		return append(dst, RateLimitEntry{Key: a.key, Value: v}), true
	case rlRemoteAddress:
		addr := req.Remote.Addr().Unmap()
		if !addr.IsValid() {
			return dst, false
		}
		return append(dst, RateLimitEntry{Key: rlKeyRemoteAddress, Value: addr.String()}), true
	case rlMaskedRemoteAddress:
		addr := req.Remote.Addr().Unmap()
		if !addr.IsValid() {
			return dst, false
		}
		bits := a.v4Mask
		if addr.Is6() {
			bits = a.v6Mask
		}
		pfx, err := addr.Prefix(bits)
		if err != nil {
			return dst, false
		}
		return append(dst, RateLimitEntry{Key: rlKeyMaskedRemoteAddress, Value: pfx.String()}), true
	case rlGenericKey:
		return append(dst, RateLimitEntry{Key: a.key, Value: a.value}), true
	case rlHeaderValueMatch:
		// Envoy's HeaderUtility::matchHeaders: every header matcher must
		// match.
		matched := true
		for i := range a.headers {
			if !a.headers[i].Matches(req.Headers) {
				matched = false
				break
			}
		}
		if matched != a.expectMatch {
			return dst, false
		}
		return append(dst, RateLimitEntry{Key: a.key, Value: a.value}), true
	}
	return dst, false
}
