package rbac

import (
	"crypto/x509"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/matcher"
)

// Action is an RBAC rules action (envoy.config.rbac.v3.RBAC.Action).
type Action int

const (
	// Allow lets a request through only when some policy matches.
	Allow Action = iota
	// Deny refuses a request when some policy matches.
	Deny
	// Log lets every request through; a match only marks it for logging.
	Log
)

// Request is what matchers look at: a request's headers (nil for the
// network filter) and its connection's properties. One per evaluation,
// on the caller's stack.
type Request struct {
	// Headers are the request headers; nil when there is no request (the
	// network filter): header and url_path rules then never match.
	Headers *hhttp.Headers
	// Remote is the downstream remote address (after XFF or
	// proxy_protocol); Direct is the socket peer; Local is the
	// downstream local address.
	Remote, Direct, Local netip.AddrPort
	// SNI is the requested server name, "" when none.
	SNI string
	// TLS is true when the downstream connection is TLS (Envoy's
	// connection.ssl() is set); PeerCert is the client's certificate, nil
	// when it sent none.
	TLS      bool
	PeerCert *x509.Certificate
	// Metadata is the stream's dynamic metadata
	// (streaminfo.Info.DynamicMetadata), read by metadata rules; nil when
	// there is none.
	Metadata map[string]*structpb.Struct
}

type ruleKind uint8

const (
	ruleAny ruleKind = iota + 1
	ruleAnd
	ruleOr
	ruleNot
	ruleHeader
	rulePath
	ruleDestIP
	ruleDestPort
	ruleDestPortRange
	ruleSNI
	ruleDirectIP
	ruleRemoteIP
	ruleAuthenticated
	ruleMetadata
)

// rule is one compiled Permission or Principal. Immutable.
type rule struct {
	kind     ruleKind
	children []rule // and, or; not has one
	header   matcher.Header
	str      matcher.String // url_path, requested_server_name, authenticated.principal_name
	hasStr   bool           // authenticated: principal_name is set
	prefix   netip.Prefix
	lo, hi   uint32 // destination_port (lo == hi) or [lo, hi)
	md       *metadataMatcher
}

// match is Envoy's Matcher::matches (filters/common/rbac/matchers.cc).
func (r *rule) match(q *Request) bool {
	switch r.kind {
	case ruleAny:
		return true
	case ruleAnd:
		for i := range r.children {
			if !r.children[i].match(q) {
				return false
			}
		}
		return true
	case ruleOr:
		for i := range r.children {
			if r.children[i].match(q) {
				return true
			}
		}
		return false
	case ruleNot:
		return !r.children[0].match(q)
	case ruleHeader:
		return q.Headers != nil && r.header.Matches(q.Headers)
	case rulePath:
		// PathMatcher: the :path without query and fragment; no path, no match.
		if q.Headers == nil {
			return false
		}
		p := q.Headers.Path()
		if p == "" {
			return false
		}
		if i := strings.IndexAny(p, "?#"); i >= 0 {
			p = p[:i]
		}
		return r.str.Match(p)
	case ruleDestIP:
		return ipIn(r.prefix, q.Local)
	case ruleDestPort:
		return q.Local.IsValid() && uint32(q.Local.Port()) == r.lo
	case ruleDestPortRange:
		p := uint32(q.Local.Port())
		return q.Local.IsValid() && p >= r.lo && p < r.hi
	case ruleSNI:
		return r.str.Match(q.SNI)
	case ruleDirectIP:
		return ipIn(r.prefix, q.Direct)
	case ruleRemoteIP:
		return ipIn(r.prefix, q.Remote)
	case ruleAuthenticated:
		return r.matchAuthenticated(q)
	case ruleMetadata:
		// Envoy's rbac MetadataMatcher: matches the stream's dynamic metadata.
		return r.md.match(q.Metadata)
	}
	return false
}

// matchAuthenticated is Envoy's AuthenticatedMatcher::matches
// (source/extensions/filters/common/rbac/matchers.cc): no TLS, no match;
// without principal_name any TLS connection matches; else the peer
// certificate's URI SANs, then DNS SANs, then its subject (RFC 2253) are
// tried in that order.
func (r *rule) matchAuthenticated(q *Request) bool {
	if !q.TLS {
		return false
	}
	if !r.hasStr {
		return true
	}
	c := q.PeerCert
	if c == nil {
		return r.str.Match("")
	}
	for _, u := range c.URIs {
		if r.str.Match(u.String()) {
			return true
		}
	}
	for _, d := range c.DNSNames {
		if r.str.Match(d) {
			return true
		}
	}
	return r.str.Match(c.Subject.String())
}

func ipIn(p netip.Prefix, a netip.AddrPort) bool {
	return a.IsValid() && p.Contains(a.Addr().Unmap())
}

// policy is one compiled Policy: any permission and any principal.
type policy struct {
	name        string
	details     string // rbac_access_denied_matched_policy[<name>]
	permissions []rule
	principals  []rule
}

func (p *policy) match(q *Request) bool {
	ok := false
	for i := range p.permissions {
		if p.permissions[i].match(q) {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	for i := range p.principals {
		if p.principals[i].match(q) {
			return true
		}
	}
	return false
}

// Engine is a compiled envoy.config.rbac.v3.RBAC (Envoy's
// RoleBasedAccessControlEngineImpl). Immutable; safe for concurrent use.
type Engine struct {
	action Action
	// policies sorted by name: Envoy keeps them in a std::map, so the
	// effective policy is the first matching name.
	policies []policy
}

// UsesTLS reports whether some rule of e reads the connection's TLS state
// (Request.TLS, Request.PeerCert): callers that pay to fetch it may skip
// it otherwise. A nil e uses nothing.
func (e *Engine) UsesTLS() bool {
	if e == nil {
		return false
	}
	for i := range e.policies {
		for _, rs := range [][]rule{e.policies[i].permissions, e.policies[i].principals} {
			for j := range rs {
				if rs[j].usesTLS() {
					return true
				}
			}
		}
	}
	return false
}

func (r *rule) usesTLS() bool {
	if r.kind == ruleAuthenticated {
		return true
	}
	for i := range r.children {
		if r.children[i].usesTLS() {
			return true
		}
	}
	return false
}

// DetailsNone is the response_code_details (HTTP) or
// connection_termination_details (network) when no policy matched
// (Filters::Common::RBAC::responseDetail("none")).
const DetailsNone = "rbac_access_denied_matched_policy[none]"

// Handle is Envoy's handleAction: whether the request is allowed, and the
// details a denial carries (rbac_access_denied_matched_policy[<name>|none]).
// It allocates nothing.
func (e *Engine) Handle(q *Request) (allowed bool, details string) {
	var matched *policy
	for i := range e.policies {
		if e.policies[i].match(q) {
			matched = &e.policies[i]
			break
		}
	}
	switch e.action {
	case Allow:
		if matched == nil {
			return false, DetailsNone
		}
		return true, ""
	case Deny:
		if matched != nil {
			return false, matched.details
		}
		return true, ""
	}
	return true, "" // Log
}

// ResponseDetail is Envoy's Filters::Common::RBAC::responseDetail: spaces
// in the policy name become '_' (StringUtil::replaceAllEmptySpace).
func ResponseDetail(name string) string {
	return "rbac_access_denied_matched_policy[" + strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\f', '\v', '\n', '\r':
			return '_'
		}
		return r
	}, name) + "]"
}

// celIssues: CEL conditions are refused with the issue that tracks them.
var celIssues = map[string]string{"condition": "#8", "checked_condition": "#8", "cel_config": "#8"}

// Kinds are the Permission and Principal oneof cases a filter accepts
// (their proto field names); any other set case is refused by name.
type Kinds struct {
	Permissions, Principals []string
	// Refused maps a case that is refused with its own message (not "not
	// supported by herald yet") to that message.
	Refused map[string]string
}

// HTTPKinds are the cases envoy.filters.http.rbac supports.
var HTTPKinds = Kinds{
	Permissions: []string{
		"any", "header", "url_path", "destination_ip", "destination_port",
		"destination_port_range", "and_rules", "or_rules", "not_rule", "requested_server_name",
		"metadata", "sourced_metadata",
	},
	Principals: []string{
		"any", "direct_remote_ip", "remote_ip", "source_ip", "header", "url_path",
		"and_ids", "or_ids", "not_id", "authenticated", "metadata", "sourced_metadata",
	},
}

// Compile compiles rbac at path, accepting the rule kinds k; nil rbac
// means no engine (Envoy's createEngine returns nullptr without rules:
// every request passes). Errors are appended to errs.
func Compile(r *rbacv3.RBAC, path string, k Kinds, errs *configerr.List) *Engine {
	if r == nil {
		return nil
	}
	*errs = append(*errs, configerr.RejectUnlisted(r, path, map[string]string{"audit_logging_options": "#8"}, "action", "policies")...)
	e := &Engine{}
	switch r.GetAction() {
	case rbacv3.RBAC_ALLOW:
		e.action = Allow
	case rbacv3.RBAC_DENY:
		e.action = Deny
	case rbacv3.RBAC_LOG:
		e.action = Log
	default:
		*errs = append(*errs, configerr.At(path+".action", "unknown action %v", r.GetAction()))
	}
	names := make([]string, 0, len(r.GetPolicies()))
	for n := range r.GetPolicies() {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := r.GetPolicies()[n]
		pp := path + ".policies[" + n + "]"
		*errs = append(*errs, configerr.RejectUnlisted(p, pp, celIssues, "permissions", "principals")...)
		if len(p.GetPermissions()) == 0 {
			*errs = append(*errs, configerr.At(pp+".permissions", "a policy needs at least one permission"))
		}
		if len(p.GetPrincipals()) == 0 {
			*errs = append(*errs, configerr.At(pp+".principals", "a policy needs at least one principal"))
		}
		c := policy{name: n, details: ResponseDetail(n)}
		for i, perm := range p.GetPermissions() {
			c.permissions = append(c.permissions, k.permission(perm, pp+".permissions["+strconv.Itoa(i)+"]", errs))
		}
		for i, pr := range p.GetPrincipals() {
			c.principals = append(c.principals, k.principal(pr, pp+".principals["+strconv.Itoa(i)+"]", errs))
		}
		e.policies = append(e.policies, c)
	}
	return e
}

// refuseOneof reports the set case of m's oneof when it is not in allowed,
// by name, and whether one is set at all.
func refuseOneof(m protoreflect.ProtoMessage, oneof protoreflect.Name, path string, allowed []string, refused map[string]string, errs *configerr.List) bool {
	r := m.ProtoReflect()
	fd := r.WhichOneof(r.Descriptor().Oneofs().ByName(oneof))
	if fd == nil {
		*errs = append(*errs, configerr.At(path, "one of %s is required", strings.Join(allowed, ", ")))
		return false
	}
	if msg, ok := refused[string(fd.Name())]; ok {
		*errs = append(*errs, configerr.At(path+"."+string(fd.Name()), "%s", msg))
		return false
	}
	if !slices.Contains(allowed, string(fd.Name())) {
		*errs = append(*errs, configerr.At(path+"."+string(fd.Name()), "%s is %s (#8)", fd.Name(), configerr.NotSupported))
		return false
	}
	return true
}

func (k *Kinds) permission(p *rbacv3.Permission, path string, errs *configerr.List) rule {
	if !refuseOneof(p, "rule", path, k.Permissions, k.Refused, errs) {
		return rule{}
	}
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		return anyRule(r.Any, path+".any", errs)
	case *rbacv3.Permission_AndRules:
		return setRule(ruleAnd, r.AndRules.GetRules(), path+".and_rules.rules", errs, k.permission)
	case *rbacv3.Permission_OrRules:
		return setRule(ruleOr, r.OrRules.GetRules(), path+".or_rules.rules", errs, k.permission)
	case *rbacv3.Permission_NotRule:
		return rule{kind: ruleNot, children: []rule{k.permission(r.NotRule, path+".not_rule", errs)}}
	case *rbacv3.Permission_Header:
		return headerRule(r.Header, path+".header", errs)
	case *rbacv3.Permission_UrlPath:
		return pathRule(r.UrlPath, path+".url_path", errs)
	case *rbacv3.Permission_DestinationIp:
		return rule{kind: ruleDestIP, prefix: cidr(r.DestinationIp, path+".destination_ip", errs)}
	case *rbacv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			*errs = append(*errs, configerr.At(path+".destination_port", "value must be less than or equal to 65535"))
		}
		return rule{kind: ruleDestPort, lo: r.DestinationPort}
	case *rbacv3.Permission_DestinationPortRange:
		rg := r.DestinationPortRange
		return rule{kind: ruleDestPortRange, lo: uint32(max(rg.GetStart(), 0)), hi: uint32(max(rg.GetEnd(), 0))}
	case *rbacv3.Permission_RequestedServerName:
		s, _ := matcher.NewString(r.RequestedServerName, path+".requested_server_name", errs)
		return rule{kind: ruleSNI, str: s}
	case *rbacv3.Permission_Metadata:
		return metadataRule(r.Metadata, path+".metadata", errs)
	case *rbacv3.Permission_SourcedMetadata:
		return sourcedMetadataRule(r.SourcedMetadata, path+".sourced_metadata", errs)
	}
	return rule{}
}

func (k *Kinds) principal(p *rbacv3.Principal, path string, errs *configerr.List) rule {
	if !refuseOneof(p, "identifier", path, k.Principals, k.Refused, errs) {
		return rule{}
	}
	switch r := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		return anyRule(r.Any, path+".any", errs)
	case *rbacv3.Principal_AndIds:
		return setRule(ruleAnd, r.AndIds.GetIds(), path+".and_ids.ids", errs, k.principal)
	case *rbacv3.Principal_OrIds:
		return setRule(ruleOr, r.OrIds.GetIds(), path+".or_ids.ids", errs, k.principal)
	case *rbacv3.Principal_NotId:
		return rule{kind: ruleNot, children: []rule{k.principal(r.NotId, path+".not_id", errs)}}
	case *rbacv3.Principal_Header:
		return headerRule(r.Header, path+".header", errs)
	case *rbacv3.Principal_UrlPath:
		return pathRule(r.UrlPath, path+".url_path", errs)
	case *rbacv3.Principal_SourceIp:
		// Deprecated: the connection's remote address, i.e. the direct peer.
		return rule{kind: ruleDirectIP, prefix: cidr(r.SourceIp, path+".source_ip", errs)}
	case *rbacv3.Principal_DirectRemoteIp:
		return rule{kind: ruleDirectIP, prefix: cidr(r.DirectRemoteIp, path+".direct_remote_ip", errs)}
	case *rbacv3.Principal_RemoteIp:
		return rule{kind: ruleRemoteIP, prefix: cidr(r.RemoteIp, path+".remote_ip", errs)}
	case *rbacv3.Principal_Authenticated_:
		ap := path + ".authenticated"
		*errs = append(*errs, configerr.RejectUnlisted(r.Authenticated, ap, nil, "principal_name")...)
		ru := rule{kind: ruleAuthenticated}
		if pn := r.Authenticated.GetPrincipalName(); pn != nil {
			ru.str, _ = matcher.NewString(pn, ap+".principal_name", errs)
			ru.hasStr = true
		}
		return ru
	case *rbacv3.Principal_Metadata:
		return metadataRule(r.Metadata, path+".metadata", errs)
	case *rbacv3.Principal_SourcedMetadata:
		return sourcedMetadataRule(r.SourcedMetadata, path+".sourced_metadata", errs)
	}
	return rule{}
}

func metadataRule(mm *matcherv3.MetadataMatcher, path string, errs *configerr.List) rule {
	m := compileMetadata(mm, path, errs)
	return rule{kind: ruleMetadata, md: &m}
}

// sourcedMetadataRule accepts metadata_source DYNAMIC (the default, the
// same as a metadata rule); ROUTE (the matched route's metadata) is
// refused.
func sourcedMetadataRule(sm *rbacv3.SourcedMetadata, path string, errs *configerr.List) rule {
	if sm.GetMetadataSource() != rbacv3.MetadataSource_DYNAMIC {
		*errs = append(*errs, configerr.At(path+".metadata_source", "%v is %s (#8)", sm.GetMetadataSource(), configerr.NotSupported))
	}
	if sm.GetMetadataMatcher() == nil {
		*errs = append(*errs, configerr.At(path+".metadata_matcher", "value is required"))
		return rule{}
	}
	return metadataRule(sm.GetMetadataMatcher(), path+".metadata_matcher", errs)
}

// anyRule checks Envoy's validation "any: const true".
func anyRule(v bool, path string, errs *configerr.List) rule {
	if !v {
		*errs = append(*errs, configerr.At(path, "value must equal true"))
	}
	return rule{kind: ruleAny}
}

func setRule[M any](kind ruleKind, ms []M, path string, errs *configerr.List, compile func(M, string, *configerr.List) rule) rule {
	if len(ms) == 0 {
		*errs = append(*errs, configerr.At(path, "value must contain at least 1 item(s)"))
	}
	r := rule{kind: kind, children: make([]rule, 0, len(ms))}
	for i, m := range ms {
		r.children = append(r.children, compile(m, path+"["+strconv.Itoa(i)+"]", errs))
	}
	return r
}

func headerRule(hm *routev3.HeaderMatcher, path string, errs *configerr.List) rule {
	h, _ := matcher.NewHeader(hm, path, errs)
	return rule{kind: ruleHeader, header: h}
}

func pathRule(pm *matcherv3.PathMatcher, path string, errs *configerr.List) rule {
	sm := pm.GetPath()
	if sm == nil {
		*errs = append(*errs, configerr.At(path+".path", "path is required"))
		return rule{}
	}
	s, _ := matcher.NewString(sm, path+".path", errs)
	return rule{kind: rulePath, str: s}
}

// cidr compiles a CidrRange (Envoy's Network::Address::CidrRange).
func cidr(c *corev3.CidrRange, path string, errs *configerr.List) netip.Prefix {
	a, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		*errs = append(*errs, configerr.At(path+".address_prefix", "malformed IP address: %q", c.GetAddressPrefix()))
		return netip.Prefix{}
	}
	a = a.Unmap()
	bits := int(c.GetPrefixLen().GetValue())
	if bits > a.BitLen() {
		*errs = append(*errs, configerr.At(path+".prefix_len", "prefix length %d is longer than the %d bits of %s", bits, a.BitLen(), a))
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, bits).Masked()
}
