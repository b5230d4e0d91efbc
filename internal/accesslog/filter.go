package accesslog

import (
	"fmt"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/matcher"
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
		var errs configerr.List
		m, ok := matcher.NewHeader(f.HeaderFilter.GetHeader(), path+".header_filter.header", &errs)
		if !ok || len(errs) > 0 {
			return nil, errs[0]
		}
		return headerFilter{m: &m}, nil
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

type headerFilter struct{ m *matcher.Header }

// Match implements Filter. A record without request headers (TCP) matches
// as if every header were missing.
func (f headerFilter) Match(info *streaminfo.Info) bool {
	h := info.RequestHeaders
	if h == nil {
		h = &noHeaders
	}
	return f.m.Matches(h)
}

// noHeaders stands for a record without request headers; never written.
var noHeaders hhttp.Headers
