package router

import (
	"fmt"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/matcher"
)

// pathKind is RouteMatch.path_specifier.
type pathKind int

const (
	pathPrefix pathKind = iota + 1
	pathExact
	pathRegex
	pathSeparatedPrefix
	// pathConnect is connect_matcher: CONNECT requests (which have no
	// :path) and nothing else (upgrade.go).
	pathConnect
)

// routeMatch is a compiled RouteMatch. Immutable after Build.
type routeMatch struct {
	kind          pathKind
	value         string // prefix, path or path_separated_prefix
	caseSensitive bool
	regex         *regexp.Regexp
	headers       []matcher.Header
	query         []queryMatcher
	grpc          bool
}

func buildRouteMatch(m *routev3.RouteMatch, path string, errs *configerr.List) routeMatch {
	checkUnsupported(m, path, errs)
	rm := routeMatch{caseSensitive: true}
	// Envoy: case_sensitive defaults to true; it does not apply to safe_regex.
	if m.GetCaseSensitive() != nil {
		rm.caseSensitive = m.GetCaseSensitive().GetValue()
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		rm.kind, rm.value = pathPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		rm.kind, rm.value = pathExact, ps.Path
	case *routev3.RouteMatch_SafeRegex:
		rm.kind = pathRegex
		re, err := matcher.FullRegex(ps.SafeRegex)
		if err != nil {
			*errs = append(*errs, configerr.At(path+".safe_regex.regex", "%v", err))
		}
		rm.regex = re
	case *routev3.RouteMatch_PathSeparatedPrefix:
		rm.kind, rm.value = pathSeparatedPrefix, ps.PathSeparatedPrefix
	case *routev3.RouteMatch_ConnectMatcher_:
		rm.kind = pathConnect
	case nil:
		*errs = append(*errs, configerr.At(path, "one of prefix, path, safe_regex or path_separated_prefix is required"))
	default:
		// path_match_policy: reported by checkUnsupported.
	}
	for i, hm := range m.GetHeaders() {
		if h, ok := matcher.NewHeader(hm, fmt.Sprintf("%s.headers[%d]", path, i), errs); ok {
			rm.headers = append(rm.headers, h)
		}
	}
	for i, qm := range m.GetQueryParameters() {
		if q, ok := buildQueryMatcher(qm, fmt.Sprintf("%s.query_parameters[%d]", path, i), errs); ok {
			rm.query = append(rm.query, q)
		}
	}
	rm.grpc = m.GetGrpc() != nil
	return rm
}

// matches reports whether the request matches. fullPath is :path with its
// query; path is fullPath without query and fragment (and path parameters,
// when the table ignores them).
func (m *routeMatch) matches(h *hhttp.Headers, fullPath, path string) bool {
	if !m.matchPath(path) {
		return false
	}
	return m.matchRest(h, fullPath)
}

// matchRest applies the conditions other than the path.
func (m *routeMatch) matchRest(h *hhttp.Headers, fullPath string) bool {
	// Envoy (RouteEntryImplBase::matchRoute): grpc, then headers, then query
	// parameters; all must match.
	if m.grpc && !isGRPC(h) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].Matches(h) {
			return false
		}
	}
	for i := range m.query {
		if !m.query[i].matches(fullPath) {
			return false
		}
	}
	return true
}

func (m *routeMatch) matchPath(path string) bool {
	switch m.kind {
	case pathPrefix:
		return matcher.HasPrefix(path, m.value, m.caseSensitive)
	case pathExact:
		if m.caseSensitive {
			return path == m.value
		}
		return matcher.EqualFold(path, m.value)
	case pathRegex:
		return m.regex.MatchString(path)
	case pathSeparatedPrefix:
		// Envoy: the prefix must be followed by the end of the path or '/'.
		return matcher.HasPrefix(path, m.value, m.caseSensitive) &&
			(len(path) == len(m.value) || path[len(m.value)] == '/')
	}
	return false
}

// isGRPC is Envoy's Grpc::Common::isGrpcRequestHeaders: content-type is
// "application/grpc" or starts with "application/grpc+".
func isGRPC(h *hhttp.Headers) bool { return hhttp.IsGRPCContentType(h.Get("content-type")) }

// stripQueryAndFragment is Envoy's PathUtil::removeQueryAndFragment.
func stripQueryAndFragment(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}

// queryMatcher is a compiled route.v3.QueryParameterMatcher.
type queryMatcher struct {
	name       string
	hasPresent bool
	present    bool
	hasString  bool
	str        matcher.String
}

func buildQueryMatcher(qm *routev3.QueryParameterMatcher, path string, errs *configerr.List) (queryMatcher, bool) {
	m := queryMatcher{name: qm.GetName()}
	switch s := qm.GetQueryParameterMatchSpecifier().(type) {
	case *routev3.QueryParameterMatcher_StringMatch:
		sm, ok := matcher.NewString(s.StringMatch, path+".string_match", errs)
		if !ok {
			return m, false
		}
		m.hasString, m.str = true, sm
	case *routev3.QueryParameterMatcher_PresentMatch:
		m.hasPresent, m.present = true, s.PresentMatch
	}
	return m, true
}

// matches is Envoy's ConfigUtility::QueryParameterMatcher::matches: only the
// first value of the parameter counts; present_match compares presence; no
// specifier means "present". Names and values are compared undecoded, as
// Envoy's parseQueryString does.
func (m *queryMatcher) matches(fullPath string) bool {
	v, found := firstQueryValue(fullPath, m.name)
	if m.hasPresent {
		return found == m.present
	}
	if !found {
		return false
	}
	if !m.hasString {
		return true
	}
	return m.str.Match(v)
}

// firstQueryValue scans the query of p (Envoy's
// QueryParamsMulti::parseQueryString: split at '&', then at the first '=';
// a parameter without '=' has value "").
func firstQueryValue(p, name string) (string, bool) {
	q := strings.IndexByte(p, '?')
	if q < 0 {
		return "", false
	}
	rest := p[q+1:]
	for len(rest) > 0 {
		param := rest
		if amp := strings.IndexByte(rest, '&'); amp >= 0 {
			param, rest = rest[:amp], rest[amp+1:]
		} else {
			rest = ""
		}
		k, v, _ := strings.Cut(param, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}
