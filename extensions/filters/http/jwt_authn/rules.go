package jwtauthn

import (
	"fmt"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/matcher"
)

// routeMatcher is a compiled RequirementRule.match (Envoy's jwt_authn
// matcher.cc: the path specifiers and headers of a RouteMatch). Immutable.
type routeMatcher struct {
	kind          pathKind
	value         string
	caseSensitive bool
	regex         *regexp.Regexp
	headers       []matcher.Header
}

type pathKind uint8

const (
	pathPrefix pathKind = iota + 1
	pathExact
	pathRegex
	pathSeparatedPrefix
)

var matchFields = []string{"prefix", "path", "safe_regex", "path_separated_prefix", "case_sensitive", "headers"}

func buildRouteMatcher(m *routev3.RouteMatch, path string, errs *configerr.List) routeMatcher {
	*errs = append(*errs, configerr.RejectUnlisted(m, path, map[string]string{
		"query_parameters": "#8", "grpc": "#8", "runtime_fraction": "#8",
	}, matchFields...)...)
	rm := routeMatcher{caseSensitive: true}
	if cs := m.GetCaseSensitive(); cs != nil {
		rm.caseSensitive = cs.GetValue()
	}
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		rm.kind, rm.value = pathPrefix, ps.Prefix
	case *routev3.RouteMatch_Path:
		rm.kind, rm.value = pathExact, ps.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := matcher.FullRegex(ps.SafeRegex)
		if err != nil {
			*errs = append(*errs, configerr.At(path+".safe_regex.regex", "%v", err))
		}
		rm.kind, rm.regex = pathRegex, re
	case *routev3.RouteMatch_PathSeparatedPrefix:
		rm.kind, rm.value = pathSeparatedPrefix, ps.PathSeparatedPrefix
	case nil:
		*errs = append(*errs, configerr.At(path, "one of prefix, path, safe_regex or path_separated_prefix is required"))
	}
	for i, hm := range m.GetHeaders() {
		if h, ok := matcher.NewHeader(hm, fmt.Sprintf("%s.headers[%d]", path, i), errs); ok {
			rm.headers = append(rm.headers, h)
		}
	}
	return rm
}

// matches reports whether the request matches: the prefix is matched
// against the whole :path, the other specifiers against the path without
// query and fragment (Envoy's PrefixMatcherImpl, PathMatcherImpl,
// RegexMatcherImpl, PathSeparatedPrefixMatcherImpl), then every header
// matcher.
func (m *routeMatcher) matches(h *hhttp.Headers) bool {
	full := h.Path()
	switch m.kind {
	case pathPrefix:
		if !matcher.HasPrefix(full, m.value, m.caseSensitive) {
			return false
		}
	case pathExact:
		p := stripQuery(full)
		if m.caseSensitive && p != m.value || !m.caseSensitive && !matcher.EqualFold(p, m.value) {
			return false
		}
	case pathRegex:
		if m.regex == nil || !m.regex.MatchString(stripQuery(full)) {
			return false
		}
	case pathSeparatedPrefix:
		p := stripQuery(full)
		if !matcher.HasPrefix(p, m.value, m.caseSensitive) || len(p) > len(m.value) && p[len(m.value)] != '/' {
			return false
		}
	default:
		return false
	}
	for i := range m.headers {
		if !m.headers[i].Matches(h) {
			return false
		}
	}
	return true
}

func stripQuery(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}
