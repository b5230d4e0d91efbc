package accesslog

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// Filter decides whether a stream is logged. Filters are compiled once and
// are safe for concurrent use.
type Filter interface {
	Match(info *streaminfo.Info) bool
}

// BuildFilter compiles an AccessLogFilter; path is its YAML path. Filters
// herald does not implement are errors naming them.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/accesslog/v3/accesslog.proto#config-accesslog-v3-accesslogfilter
func BuildFilter(cfg *accesslogv3.AccessLogFilter, path string) (Filter, error) {
	switch f := cfg.GetFilterSpecifier().(type) {
	case *accesslogv3.AccessLogFilter_StatusCodeFilter:
		return statusCodeFilter{cmp: buildComparison(f.StatusCodeFilter.GetComparison())}, nil
	case *accesslogv3.AccessLogFilter_DurationFilter:
		return durationFilter{cmp: buildComparison(f.DurationFilter.GetComparison())}, nil
	case *accesslogv3.AccessLogFilter_NotHealthCheckFilter:
		return notHealthCheckFilter{}, nil
	case *accesslogv3.AccessLogFilter_AndFilter:
		subs, err := buildFilters(f.AndFilter.GetFilters(), path+".and_filter.filters")
		if err != nil {
			return nil, err
		}
		return andFilter(subs), nil
	case *accesslogv3.AccessLogFilter_OrFilter:
		subs, err := buildFilters(f.OrFilter.GetFilters(), path+".or_filter.filters")
		if err != nil {
			return nil, err
		}
		return orFilter(subs), nil
	case *accesslogv3.AccessLogFilter_ResponseFlagFilter:
		return buildResponseFlagFilter(f.ResponseFlagFilter, path+".response_flag_filter")
	case *accesslogv3.AccessLogFilter_HeaderFilter:
		m, err := buildHeaderMatcher(f.HeaderFilter.GetHeader(), path+".header_filter.header")
		if err != nil {
			return nil, err
		}
		return headerFilter{m: m}, nil
	case nil:
		return nil, configerr.At(path, "filter has no filter_specifier")
	}
	name := unsupportedFilterName(cfg)
	return nil, configerr.At(path+"."+name, "access log filter %s is not supported by herald yet", name)
}

func unsupportedFilterName(cfg *accesslogv3.AccessLogFilter) string {
	switch cfg.GetFilterSpecifier().(type) {
	case *accesslogv3.AccessLogFilter_TraceableFilter:
		return "traceable_filter"
	case *accesslogv3.AccessLogFilter_RuntimeFilter:
		return "runtime_filter"
	case *accesslogv3.AccessLogFilter_GrpcStatusFilter:
		return "grpc_status_filter"
	case *accesslogv3.AccessLogFilter_ExtensionFilter:
		return "extension_filter"
	case *accesslogv3.AccessLogFilter_MetadataFilter:
		return "metadata_filter"
	case *accesslogv3.AccessLogFilter_LogTypeFilter:
		return "log_type_filter"
	}
	return fmt.Sprintf("%T", cfg.GetFilterSpecifier())
}

func buildFilters(cfgs []*accesslogv3.AccessLogFilter, path string) ([]Filter, error) {
	out := make([]Filter, 0, len(cfgs))
	for i, c := range cfgs {
		f, err := BuildFilter(c, fmt.Sprintf("%s[%d]", path, i))
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// comparison is a ComparisonFilter. herald has no runtime layer, so the
// value is the RuntimeUInt32's default_value, which is what Envoy uses when
// runtime_key is not set in runtime.
type comparison struct {
	op    accesslogv3.ComparisonFilter_Op
	value uint64
}

func buildComparison(c *accesslogv3.ComparisonFilter) comparison {
	return comparison{op: c.GetOp(), value: uint64(c.GetValue().GetDefaultValue())}
}

func (c comparison) match(v uint64) bool {
	switch c.op {
	case accesslogv3.ComparisonFilter_GE:
		return v >= c.value
	case accesslogv3.ComparisonFilter_LE:
		return v <= c.value
	case accesslogv3.ComparisonFilter_NE:
		return v != c.value
	}
	return v == c.value
}

// statusCodeFilter compares the response code; a stream without a response
// compares as 0, as in Envoy.
type statusCodeFilter struct{ cmp comparison }

// Match implements Filter.
func (f statusCodeFilter) Match(info *streaminfo.Info) bool {
	return f.cmp.match(uint64(max(info.ResponseCode, 0)))
}

// durationFilter compares the stream's duration in milliseconds (so far,
// when it has not ended); a stream that never started does not match.
type durationFilter struct{ cmp comparison }

// Match implements Filter.
func (f durationFilter) Match(info *streaminfo.Info) bool {
	if info.StartTime.IsZero() {
		return false
	}
	return f.cmp.match(uint64(max(info.Duration().Milliseconds(), 0)))
}

type notHealthCheckFilter struct{}

// Match implements Filter.
func (notHealthCheckFilter) Match(info *streaminfo.Info) bool { return !info.HealthCheck }

type andFilter []Filter

// Match implements Filter.
func (fs andFilter) Match(info *streaminfo.Info) bool {
	for _, f := range fs {
		if !f.Match(info) {
			return false
		}
	}
	return true
}

type orFilter []Filter

// Match implements Filter.
func (fs orFilter) Match(info *streaminfo.Info) bool {
	for _, f := range fs {
		if f.Match(info) {
			return true
		}
	}
	return false
}

// responseFlagFilter matches when any of its flags is set, or any flag at all
// when none is configured.
type responseFlagFilter struct{ mask streaminfo.ResponseFlag }

func buildResponseFlagFilter(cfg *accesslogv3.ResponseFlagFilter, path string) (Filter, error) {
	var mask streaminfo.ResponseFlag
	for i, name := range cfg.GetFlags() {
		f, ok := streaminfo.FlagByShortName(name)
		if !ok {
			return nil, configerr.At(fmt.Sprintf("%s.flags[%d]", path, i), "unknown response flag %q", name)
		}
		mask |= f
	}
	if mask == 0 {
		mask = ^streaminfo.ResponseFlag(0)
	}
	return responseFlagFilter{mask: mask}, nil
}

// Match implements Filter.
func (f responseFlagFilter) Match(info *streaminfo.Info) bool { return info.Flags&f.mask != 0 }

type headerFilter struct{ m *headerMatcher }

// Match implements Filter.
func (f headerFilter) Match(info *streaminfo.Info) bool { return f.m.match(info.RequestHeaders) }

type headerMatchKind uint8

const (
	matchPresent headerMatchKind = iota
	matchExact
	matchPrefix
	matchSuffix
	matchContains
	matchRegex
	matchRange
)

// headerMatcher is a compiled route.v3.HeaderMatcher, Envoy's
// HeaderUtility::HeaderData
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-headermatcher).
type headerMatcher struct {
	name           string
	kind           headerMatchKind
	value          string // exact/prefix/suffix/contains operand
	ignoreCase     bool
	re             *regexp.Regexp
	start, end     int64 // range: [start, end)
	present        bool
	invert         bool
	missingIsEmpty bool
}

func buildHeaderMatcher(cfg *routev3.HeaderMatcher, path string) (*headerMatcher, error) {
	m := &headerMatcher{
		name:           strings.ToLower(cfg.GetName()),
		invert:         cfg.GetInvertMatch(),
		missingIsEmpty: cfg.GetTreatMissingHeaderAsEmpty(),
	}
	switch s := cfg.GetHeaderMatchSpecifier().(type) {
	case nil:
		// No specifier: match on presence.
		m.kind, m.present = matchPresent, true
	case *routev3.HeaderMatcher_PresentMatch:
		m.kind, m.present = matchPresent, s.PresentMatch
	case *routev3.HeaderMatcher_ExactMatch:
		m.kind, m.value = matchExact, s.ExactMatch
	case *routev3.HeaderMatcher_PrefixMatch:
		m.kind, m.value = matchPrefix, s.PrefixMatch
	case *routev3.HeaderMatcher_SuffixMatch:
		m.kind, m.value = matchSuffix, s.SuffixMatch
	case *routev3.HeaderMatcher_ContainsMatch:
		m.kind, m.value = matchContains, s.ContainsMatch
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := compileFullRegex(s.SafeRegexMatch.GetRegex())
		if err != nil {
			return nil, configerr.At(path+".safe_regex_match.regex", "%v", err)
		}
		m.kind, m.re = matchRegex, re
	case *routev3.HeaderMatcher_RangeMatch:
		m.kind, m.start, m.end = matchRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
	case *routev3.HeaderMatcher_StringMatch:
		if err := m.setStringMatcher(s.StringMatch, path+".string_match"); err != nil {
			return nil, err
		}
	default:
		return nil, configerr.At(path, "header match specifier %T is not supported by herald yet", s)
	}
	return m, nil
}

func (m *headerMatcher) setStringMatcher(sm *matcherv3.StringMatcher, path string) error {
	m.ignoreCase = sm.GetIgnoreCase()
	switch p := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		m.kind, m.value = matchExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		m.kind, m.value = matchPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		m.kind, m.value = matchSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		m.kind, m.value = matchContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileFullRegex(p.SafeRegex.GetRegex())
		if err != nil {
			return configerr.At(path+".safe_regex.regex", "%v", err)
		}
		m.kind, m.re = matchRegex, re
	default:
		return configerr.At(path, "string matcher %T is not supported by herald yet", p)
	}
	if m.ignoreCase {
		m.value = strings.ToLower(m.value)
	}
	return nil
}

// compileFullRegex compiles an RE2 pattern that must match the whole value,
// as Envoy's safe_regex does.
func compileFullRegex(pattern string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + pattern + `)$`)
}

func (m *headerMatcher) match(h *hhttp.Headers) bool {
	var v string
	ok := false
	if h != nil {
		v, ok = headerValue(h, m.name)
	}
	if !ok {
		if m.kind == matchPresent {
			// present_match: false matches an absent header.
			return !m.present != m.invert
		}
		if !m.missingIsEmpty {
			// A missing header never matches, inverted or not.
			return false
		}
	}
	var r bool
	switch m.kind {
	case matchPresent:
		r = m.present
	case matchExact:
		if m.ignoreCase {
			r = strings.EqualFold(v, m.value)
		} else {
			r = v == m.value
		}
	case matchPrefix:
		if m.ignoreCase {
			r = len(v) >= len(m.value) && strings.EqualFold(v[:len(m.value)], m.value)
		} else {
			r = strings.HasPrefix(v, m.value)
		}
	case matchSuffix:
		if m.ignoreCase {
			r = len(v) >= len(m.value) && strings.EqualFold(v[len(v)-len(m.value):], m.value)
		} else {
			r = strings.HasSuffix(v, m.value)
		}
	case matchContains:
		if m.ignoreCase {
			r = strings.Contains(strings.ToLower(v), m.value)
		} else {
			r = strings.Contains(v, m.value)
		}
	case matchRegex:
		r = m.re.MatchString(v)
	case matchRange:
		n, err := strconv.ParseInt(v, 10, 64)
		r = err == nil && n >= m.start && n < m.end
	}
	return r != m.invert
}

// headerValue returns every value of name joined with ",", Envoy's
// getAllOfHeaderAsString. Only a repeated header allocates.
func headerValue(h *hhttp.Headers, name string) (string, bool) {
	v, ok := h.Lookup(name)
	if !ok || h.Count(name) == 1 {
		return v, ok
	}
	return strings.Join(h.Values(nil, name), ","), true
}
