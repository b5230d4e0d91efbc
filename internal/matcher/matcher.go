// Package matcher compiles Envoy's string and header matchers
// (type.matcher.v3.StringMatcher, route.v3.HeaderMatcher) once, for every
// package that matches on them: route tables, access-log filters, and the
// filters to come (RBAC, CORS...). Matching follows Envoy's
// HeaderUtility::matchHeaders and StringMatcherImpl.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-headermatcher
//
// It imports only internal/http and internal/configerr of herald's packages.
package matcher

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

// FullRegex compiles an RE2 pattern for whole-string matching, as
// Envoy's safe_regex matchers do (RE2::FullMatch). Go's regexp implements
// RE2 syntax.
func FullRegex(rm *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	re, err := regexp.Compile(`^(?:` + rm.GetRegex() + `)$`)
	if err != nil {
		return nil, fmt.Errorf("invalid regex %q: %v", rm.GetRegex(), err)
	}
	return re, nil
}

// String is a compiled type.matcher.v3.StringMatcher. Immutable.
type String struct {
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

func NewString(sm *matcherv3.StringMatcher, path string, errs *configerr.List) (String, bool) {
	if sm.GetCustom() != nil {
		*errs = append(*errs, configerr.At(path+".custom", configerr.NotSupported))
	}
	m := String{ignoreCase: sm.GetIgnoreCase()}
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
		re, err := FullRegex(p.SafeRegex)
		if err != nil {
			*errs = append(*errs, configerr.At(path+".safe_regex.regex", "%v", err))
			return m, false
		}
		m.kind, m.regex = stringRegex, re
	case nil:
		*errs = append(*errs, configerr.At(path, "one of exact, prefix, suffix, contains or safe_regex is required"))
		return m, false
	default:
		return m, false // custom: reported above
	}
	return m, true
}

// Match is Envoy's StringMatcherImpl::match; ignore_case is ASCII-only, as
// Envoy's absl::EqualsIgnoreCase, and does not apply to safe_regex.
func (m *String) Match(v string) bool {
	switch m.kind {
	case stringExact:
		if m.ignoreCase {
			return EqualFold(v, m.value)
		}
		return v == m.value
	case stringPrefix:
		return HasPrefix(v, m.value, !m.ignoreCase)
	case stringSuffix:
		if len(v) < len(m.value) {
			return false
		}
		if m.ignoreCase {
			return EqualFold(v[len(v)-len(m.value):], m.value)
		}
		return strings.HasSuffix(v, m.value)
	case stringContains:
		if m.ignoreCase {
			return containsFold(v, m.value)
		}
		return strings.Contains(v, m.value)
	case stringRegex:
		return m.regex.MatchString(v)
	}
	return false
}

// Header is a compiled route.v3.HeaderMatcher. Immutable.
type Header struct {
	name           string
	kind           headerMatchKind
	value          string // exact, prefix, suffix, contains
	regex          *regexp.Regexp
	rangeStart     int64
	rangeEnd       int64
	present        bool
	str            String
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

func NewHeader(hm *routev3.HeaderMatcher, path string, errs *configerr.List) (Header, bool) {
	m := Header{
		name:           strings.ToLower(hm.GetName()),
		invert:         hm.GetInvertMatch(),
		missingIsEmpty: hm.GetTreatMissingHeaderAsEmpty(),
	}
	switch s := hm.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		m.kind, m.value = headerExact, s.ExactMatch
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := FullRegex(s.SafeRegexMatch)
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
		sm, ok := NewString(s.StringMatch, path+".string_match", errs)
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

// Matches is Envoy's HeaderUtility::matchHeaders for one matcher
// (common/http/header_utility.cc): several values of the header are joined
// with "," before matching; a missing header matches only a present_match
// that expects absence (or, inverted, presence) unless
// treat_missing_header_as_empty is set.
func (m *Header) Matches(h *hhttp.Headers) bool {
	value, found := HeaderValue(h, m.name)
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
		match = m.str.Match(value)
	}
	return match != m.invert
}

// HeaderValue returns the value of name, several values joined with
// "," (allocating only in that rare case).
func HeaderValue(h *hhttp.Headers, name string) (string, bool) {
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

// HasPrefix is strings.HasPrefix, ASCII case-insensitive unless
// caseSensitive.
func HasPrefix(s, prefix string, caseSensitive bool) bool {
	if caseSensitive {
		return strings.HasPrefix(s, prefix)
	}
	return len(s) >= len(prefix) && EqualFold(s[:len(prefix)], prefix)
}

func EqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if LowerASCII(a[i]) != LowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if EqualFold(s[i:i+len(sub)], sub) {
			return true
		}
	}
	return false
}

// LowerASCII lowercases one ASCII byte.
func LowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
