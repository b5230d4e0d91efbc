package router

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// pathKind is RouteMatch.path_specifier.
type pathKind int

const (
	pathPrefix pathKind = iota + 1
	pathExact
	pathRegex
	pathSeparatedPrefix
)

// routeMatch is a compiled RouteMatch. Immutable after Build.
type routeMatch struct {
	kind          pathKind
	value         string // prefix, path or path_separated_prefix
	caseSensitive bool
	regex         *regexp.Regexp
	headers       []headerMatcher
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
		re, err := compileFullMatch(ps.SafeRegex)
		if err != nil {
			*errs = append(*errs, configerr.At(path+".safe_regex.regex", "%v", err))
		}
		rm.regex = re
	case *routev3.RouteMatch_PathSeparatedPrefix:
		rm.kind, rm.value = pathSeparatedPrefix, ps.PathSeparatedPrefix
	case nil:
		*errs = append(*errs, configerr.At(path, "one of prefix, path, safe_regex or path_separated_prefix is required"))
	default:
		// connect_matcher and path_match_policy: reported by checkUnsupported.
	}
	for i, hm := range m.GetHeaders() {
		if h, ok := buildHeaderMatcher(hm, fmt.Sprintf("%s.headers[%d]", path, i), errs); ok {
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
	// Envoy (RouteEntryImplBase::matchRoute): grpc, then headers, then query
	// parameters; all must match.
	if m.grpc && !isGRPC(h) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].matches(h) {
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
		return hasPrefixCase(path, m.value, m.caseSensitive)
	case pathExact:
		if m.caseSensitive {
			return path == m.value
		}
		return asciiEqualFold(path, m.value)
	case pathRegex:
		return m.regex.MatchString(path)
	case pathSeparatedPrefix:
		// Envoy: the prefix must be followed by the end of the path or '/'.
		return hasPrefixCase(path, m.value, m.caseSensitive) &&
			(len(path) == len(m.value) || path[len(m.value)] == '/')
	}
	return false
}

// isGRPC is Envoy's Grpc::Common::isGrpcRequestHeaders: content-type is
// "application/grpc" or starts with "application/grpc+".
func isGRPC(h *hhttp.Headers) bool {
	const grpc = "application/grpc"
	ct := h.Get("content-type")
	return strings.HasPrefix(ct, grpc) && (len(ct) == len(grpc) || ct[len(grpc)] == '+')
}

// stripQueryAndFragment is Envoy's PathUtil::removeQueryAndFragment.
func stripQueryAndFragment(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		return p[:i]
	}
	return p
}

// compileFullMatch compiles an RE2 pattern for whole-string matching, as
// Envoy's safe_regex matchers do (RE2::FullMatch). Go's regexp implements
// RE2 syntax.
func compileFullMatch(rm *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	re, err := regexp.Compile(`^(?:` + rm.GetRegex() + `)$`)
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %v", rm.GetRegex(), err)
	}
	return re, nil
}

// compileRewrite compiles a RegexMatchAndSubstitute: a pattern matched
// anywhere (RE2::GlobalReplace) and an RE2 rewrite string (\1 for a group,
// \\ for a backslash) turned into Go's template syntax (${1}, $$).
func compileRewrite(rs *matcherv3.RegexMatchAndSubstitute) (*regexp.Regexp, string, error) {
	re, err := regexp.Compile(rs.GetPattern().GetRegex())
	if err != nil {
		return nil, "", fmt.Errorf("invalid regex %q: %v", rs.GetPattern().GetRegex(), err)
	}
	sub, err := re2RewriteToGo(rs.GetSubstitution(), re.NumSubexp())
	if err != nil {
		return nil, "", err
	}
	return re, sub, nil
}

// re2RewriteToGo converts an RE2 rewrite string. RE2 fails the whole
// replacement at run time on a bad escape or a missing group; herald rejects
// the config instead, so the mistake is seen at load.
func re2RewriteToGo(s string, groups int) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '$':
			b.WriteString("$$")
		case c == '\\':
			if i+1 >= len(s) {
				return "", fmt.Errorf("invalid substitution %q: trailing backslash", s)
			}
			i++
			d := s[i]
			switch {
			case d == '\\':
				b.WriteByte('\\')
			case d >= '0' && d <= '9':
				n := int(d - '0')
				if n > groups {
					return "", fmt.Errorf("invalid substitution %q: \\%d but the pattern has %d groups", s, n, groups)
				}
				b.WriteString("${")
				b.WriteByte(d)
				b.WriteByte('}')
			default:
				return "", fmt.Errorf("invalid substitution %q: invalid escape \\%c", s, d)
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// stringMatcher is a compiled type.matcher.v3.StringMatcher.
type stringMatcher struct {
	kind       stringMatchKind
	value      string
	ignoreCase bool
	regex      *regexp.Regexp
}

type stringMatchKind int

const (
	stringExact stringMatchKind = iota + 1
	stringPrefix
	stringSuffix
	stringContains
	stringRegex
)

func buildStringMatcher(sm *matcherv3.StringMatcher, path string, errs *configerr.List) (stringMatcher, bool) {
	checkUnsupported(sm, path, errs)
	m := stringMatcher{ignoreCase: sm.GetIgnoreCase()}
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		m.kind, m.value = stringExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		m.kind, m.value = stringPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		m.kind, m.value = stringSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		m.kind, m.value = stringContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileFullMatch(p.SafeRegex)
		if err != nil {
			*errs = append(*errs, configerr.At(path+".safe_regex.regex", "%v", err))
			return m, false
		}
		m.kind, m.regex = stringRegex, re
	case nil:
		*errs = append(*errs, configerr.At(path, "one of exact, prefix, suffix, contains or safe_regex is required"))
		return m, false
	default:
		return m, false // custom: reported by checkUnsupported
	}
	return m, true
}

// match is Envoy's StringMatcherImpl::match; ignore_case is ASCII-only, as
// Envoy's absl::EqualsIgnoreCase, and does not apply to safe_regex.
func (m *stringMatcher) match(v string) bool {
	switch m.kind {
	case stringExact:
		if m.ignoreCase {
			return asciiEqualFold(v, m.value)
		}
		return v == m.value
	case stringPrefix:
		return hasPrefixCase(v, m.value, !m.ignoreCase)
	case stringSuffix:
		if len(v) < len(m.value) {
			return false
		}
		if m.ignoreCase {
			return asciiEqualFold(v[len(v)-len(m.value):], m.value)
		}
		return strings.HasSuffix(v, m.value)
	case stringContains:
		if m.ignoreCase {
			return asciiContainsFold(v, m.value)
		}
		return strings.Contains(v, m.value)
	case stringRegex:
		return m.regex.MatchString(v)
	}
	return false
}

// headerMatcher is a compiled route.v3.HeaderMatcher.
type headerMatcher struct {
	name           string
	kind           headerMatchKind
	value          string // exact, prefix, suffix, contains
	regex          *regexp.Regexp
	rangeStart     int64
	rangeEnd       int64
	present        bool
	str            stringMatcher
	invert         bool
	missingIsEmpty bool
}

type headerMatchKind int

const (
	headerExact headerMatchKind = iota + 1
	headerRegex
	headerRange
	headerPresent
	headerPrefix
	headerSuffix
	headerContains
	headerString
)

func buildHeaderMatcher(hm *routev3.HeaderMatcher, path string, errs *configerr.List) (headerMatcher, bool) {
	m := headerMatcher{
		name:           strings.ToLower(hm.GetName()),
		invert:         hm.GetInvertMatch(),
		missingIsEmpty: hm.GetTreatMissingHeaderAsEmpty(),
	}
	switch s := hm.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		m.kind, m.value = headerExact, s.ExactMatch
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := compileFullMatch(s.SafeRegexMatch)
		if err != nil {
			*errs = append(*errs, configerr.At(path+".safe_regex_match.regex", "%v", err))
			return m, false
		}
		m.kind, m.regex = headerRegex, re
	case *routev3.HeaderMatcher_RangeMatch:
		m.kind, m.rangeStart, m.rangeEnd = headerRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	case *routev3.HeaderMatcher_PresentMatch:
		m.kind, m.present = headerPresent, s.PresentMatch
	case *routev3.HeaderMatcher_PrefixMatch:
		m.kind, m.value = headerPrefix, s.PrefixMatch
	case *routev3.HeaderMatcher_SuffixMatch:
		m.kind, m.value = headerSuffix, s.SuffixMatch
	case *routev3.HeaderMatcher_ContainsMatch:
		m.kind, m.value = headerContains, s.ContainsMatch
	case *routev3.HeaderMatcher_StringMatch:
		sm, ok := buildStringMatcher(s.StringMatch, path+".string_match", errs)
		if !ok {
			return m, false
		}
		m.kind, m.str = headerString, sm
	default:
		// Envoy: no specifier means "the header is present".
		m.kind, m.present = headerPresent, true
	}
	return m, true
}

// matches is Envoy's HeaderUtility::matchHeaders for one matcher
// (common/http/header_utility.cc): several values of the header are joined
// with "," before matching; a missing header matches only a present_match
// that expects absence (or, inverted, presence) unless
// treat_missing_header_as_empty is set.
func (m *headerMatcher) matches(h *hhttp.Headers) bool {
	value, found := headerValueJoined(h, m.name)
	if !found && !m.missingIsEmpty {
		if m.invert {
			return m.kind == headerPresent && m.present
		}
		return m.kind == headerPresent && !m.present
	}
	var match bool
	switch m.kind {
	case headerExact:
		// Envoy: an empty exact_match matches any value.
		match = m.value == "" || value == m.value
	case headerRegex:
		match = m.regex.MatchString(value)
	case headerRange:
		n, err := strconv.ParseInt(value, 10, 64)
		match = err == nil && n >= m.rangeStart && n < m.rangeEnd
	case headerPresent:
		match = m.present
	case headerPrefix:
		match = strings.HasPrefix(value, m.value)
	case headerSuffix:
		match = strings.HasSuffix(value, m.value)
	case headerContains:
		match = strings.Contains(value, m.value)
	case headerString:
		match = m.str.match(value)
	}
	return match != m.invert
}

// headerValueJoined returns the value of name, several values joined with
// "," (allocating only in that rare case).
func headerValueJoined(h *hhttp.Headers, name string) (string, bool) {
	first := -1
	n := 0
	for i := range h.Fields {
		if h.Fields[i].Name == name {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	switch n {
	case 0:
		return "", false
	case 1:
		return h.Fields[first].Value, true
	}
	var b strings.Builder
	for i := first; i < len(h.Fields); i++ {
		if h.Fields[i].Name == name {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(h.Fields[i].Value)
		}
	}
	return b.String(), true
}

// queryMatcher is a compiled route.v3.QueryParameterMatcher.
type queryMatcher struct {
	name       string
	hasPresent bool
	present    bool
	hasString  bool
	str        stringMatcher
}

func buildQueryMatcher(qm *routev3.QueryParameterMatcher, path string, errs *configerr.List) (queryMatcher, bool) {
	m := queryMatcher{name: qm.GetName()}
	switch s := qm.GetQueryParameterMatchSpecifier().(type) {
	case *routev3.QueryParameterMatcher_StringMatch:
		sm, ok := buildStringMatcher(s.StringMatch, path+".string_match", errs)
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
	return m.str.match(v)
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

// hasPrefixCase is strings.HasPrefix, ASCII case-insensitive unless
// caseSensitive.
func hasPrefixCase(s, prefix string, caseSensitive bool) bool {
	if caseSensitive {
		return strings.HasPrefix(s, prefix)
	}
	return len(s) >= len(prefix) && asciiEqualFold(s[:len(prefix)], prefix)
}

func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func asciiContainsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if asciiEqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
