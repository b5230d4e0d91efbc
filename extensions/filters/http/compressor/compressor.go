package compressor

import (
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	compressorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/compressor/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/compression"
	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*compressorv3.Compressor]{
		Name:          Name,
		Config:        &compressorv3.Compressor{},
		PerRoute:      &compressorv3.CompressorPerRoute{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.http.compressor"

// defaultMinContentLength: "Minimum value of the Content-Length header ...
// Defaults to 30."
const defaultMinContentLength = 30

// defaultContentTypes is Envoy's list when content_type is empty
// (compressor_filter.cc defaultContentEncoding()).
var defaultContentTypes = []string{
	"text/html", "text/plain", "text/css", "application/javascript",
	"application/x-javascript", "text/javascript", "text/x-javascript",
	"text/ecmascript", "text/js", "text/jscript", "text/x-js",
	"application/ecmascript", "application/x-json", "application/xml",
	"application/json", "image/svg+xml", "text/xml", "application/xhtml+xml",
	"application/grpc-web", "application/grpc-web+proto",
}

var unsupportedIssues = map[string]string{
	"content_type_matcher":  "#8",
	"status_header_enabled": "#8",
	"compressor_library":    "#8",
}

// directionStats are Envoy's CompressorStats of one direction.
type directionStats struct {
	compressed, notCompressed          *stats.Counter
	totalUncompressed, totalCompressed *stats.Counter
	contentLengthTooSmall              *stats.Counter
}

func newDirectionStats(sc stats.Scope) directionStats {
	return directionStats{
		compressed:            sc.Counter("compressed"),
		notCompressed:         sc.Counter("not_compressed"),
		totalUncompressed:     sc.Counter("total_uncompressed_bytes"),
		totalCompressed:       sc.Counter("total_compressed_bytes"),
		contentLengthTooSmall: sc.Counter("content_length_too_small"),
	}
}

// responseStats are Envoy's ResponseCompressorStats.
type responseStats struct {
	noAcceptHeader, headerIdentity, headerCompressorUsed *stats.Counter
	headerCompressorOvershadowed, headerWildcard         *stats.Counter
	headerNotValid, notCompressedEtag                    *stats.Counter
}

// direction is one built CommonDirectionConfig. Immutable.
type direction struct {
	enabled          bool
	minContentLength uint64
	// contentTypes are lower-cased; Envoy compares them case-insensitively.
	contentTypes map[string]struct{}
	stats        directionStats
}

// Config is the built filter. Immutable after Build.
type Config struct {
	name        string
	factory     *compression.CompressorFactory
	encoding    string
	chooseFirst bool

	request  direction
	response direction
	// requestSet: request_direction_config is present ("If this field is
	// not specified, request compression is disabled").
	requestSet           bool
	disableOnEtag        bool
	weakenEtag           bool
	removeAcceptEncoding bool
	uncompressible       []int
	rstats               responseStats

	pool sync.Pool
}

// PerRoute is a built CompressorPerRoute. Immutable.
type PerRoute struct {
	// responseEnabled overrides the response direction's enabled when set.
	responseEnabled, responseEnabledSet bool
	// removeAcceptEncoding overrides remove_accept_encoding_header when set.
	removeAcceptEncoding, removeAcceptEncodingSet bool
}

// Build interprets the filter's Compressor once per snapshot.
func Build(cfg *compressorv3.Compressor, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	path := ctx.Path
	errs := configerr.RejectUnlisted(cfg, path, nil,
		"content_length", "content_type", "disable_on_etag_header", "remove_accept_encoding_header",
		"runtime_enabled", "compressor_library", "request_direction_config", "response_direction_config",
		"choose_first")
	rdc := cfg.GetResponseDirectionConfig()
	errs = append(errs, configerr.RejectUnlisted(rdc, path+".response_direction_config", unsupportedIssues,
		"common_config", "disable_on_etag_header", "weaken_etag_on_compress", "remove_accept_encoding_header",
		"uncompressible_response_codes")...)
	errs = append(errs, rejectCommon(rdc.GetCommonConfig(), path+".response_direction_config.common_config")...)
	errs = append(errs, configerr.RejectUnlisted(cfg.GetRequestDirectionConfig(), path+".request_direction_config", nil, "common_config")...)
	errs = append(errs, rejectCommon(cfg.GetRequestDirectionConfig().GetCommonConfig(), path+".request_direction_config.common_config")...)
	lib := cfg.GetCompressorLibrary()
	factory, err := compression.BuildCompressor(lib, path+".compressor_library")
	errs = append(errs, configerr.Collect(err, path+".compressor_library", nil)...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	c := &Config{
		name:        ctx.Name,
		factory:     factory,
		encoding:    factory.Encoding,
		chooseFirst: cfg.GetChooseFirst(),
		requestSet:  cfg.GetRequestDirectionConfig() != nil,
	}
	if c.name == "" {
		c.name = Name
	}
	// Envoy (CompressorFilterConfig): "<stat_prefix>compressor.<library
	// name>.<library stat prefix>", then "request." for the request
	// direction and "response." for the response one when
	// response_direction_config is set.
	prefix := ctx.StatPrefix + "compressor." + lib.GetName() + "." + factory.StatPrefix
	c.request = buildDirection(cfg.GetRequestDirectionConfig().GetCommonConfig(), ctx.Stats.Scope(prefix+"request."))
	if rdc != nil {
		c.response = buildDirection(rdc.GetCommonConfig(), ctx.Stats.Scope(prefix+"response."))
		c.disableOnEtag = rdc.GetDisableOnEtagHeader()
		c.weakenEtag = rdc.GetWeakenEtagOnCompress()
		c.removeAcceptEncoding = rdc.GetRemoveAcceptEncodingHeader()
		for _, code := range rdc.GetUncompressibleResponseCodes() {
			c.uncompressible = append(c.uncompressible, int(code))
		}
	} else {
		// The deprecated top-level fields (ResponseDirectionConfig::commonConfig).
		c.response = direction{
			enabled:          featureEnabled(cfg.GetRuntimeEnabled()),
			minContentLength: minLength(cfg.GetContentLength().GetValue()),
			contentTypes:     contentTypes(cfg.GetContentType()),
			stats:            newDirectionStats(ctx.Stats.Scope(prefix)),
		}
		c.disableOnEtag = cfg.GetDisableOnEtagHeader()
		c.removeAcceptEncoding = cfg.GetRemoveAcceptEncodingHeader()
	}
	sc := ctx.Stats.Scope(prefix)
	c.rstats = responseStats{
		noAcceptHeader:               sc.Counter("no_accept_header"),
		headerIdentity:               sc.Counter("header_identity"),
		headerCompressorUsed:         sc.Counter("header_compressor_used"),
		headerCompressorOvershadowed: sc.Counter("header_compressor_overshadowed"),
		headerWildcard:               sc.Counter("header_wildcard"),
		headerNotValid:               sc.Counter("header_not_valid"),
		notCompressedEtag:            sc.Counter("not_compressed_etag"),
	}
	return c.newFilter, nil
}

func rejectCommon(m *compressorv3.Compressor_CommonDirectionConfig, path string) configerr.List {
	return configerr.RejectUnlisted(m, path, unsupportedIssues, "enabled", "min_content_length", "content_type")
}

func buildDirection(m *compressorv3.Compressor_CommonDirectionConfig, sc stats.Scope) direction {
	return direction{
		enabled:          featureEnabled(m.GetEnabled()),
		minContentLength: minLength(m.GetMinContentLength().GetValue()),
		contentTypes:     contentTypes(m.GetContentType()),
		stats:            newDirectionStats(sc),
	}
}

// featureEnabled is a RuntimeFeatureFlag without a runtime: its
// default_value, true when unset (Runtime::FeatureFlag).
func featureEnabled(f *corev3.RuntimeFeatureFlag) bool {
	if f == nil || f.GetDefaultValue() == nil {
		return true
	}
	return f.GetDefaultValue().GetValue()
}

// minLength: "length > 0 ? length : DefaultMinimumContentLength".
func minLength(v uint32) uint64 {
	if v > 0 {
		return uint64(v)
	}
	return defaultMinContentLength
}

func contentTypes(types []string) map[string]struct{} {
	if len(types) == 0 {
		types = defaultContentTypes
	}
	m := make(map[string]struct{}, len(types))
	for _, t := range types {
		m[strings.ToLower(t)] = struct{}{}
	}
	return m
}

// BuildPerRoute interprets a CompressorPerRoute.
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	pr := m.(*compressorv3.CompressorPerRoute)
	errs := configerr.RejectUnlisted(pr, ctx.Path, nil, "disabled", "overrides")
	errs = append(errs, configerr.RejectUnlisted(pr.GetOverrides(), ctx.Path+".overrides", unsupportedIssues, "response_direction_config")...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	out := &PerRoute{}
	switch {
	case pr.GetDisabled():
		out.responseEnabledSet = true
	case pr.GetOverrides() != nil:
		// Envoy: "The presence of an empty response_direction_config must
		// enable response compression".
		if rd := pr.GetOverrides().GetResponseDirectionConfig(); rd != nil {
			out.responseEnabled, out.responseEnabledSet = true, true
			if v := rd.GetRemoveAcceptEncodingHeader(); v != nil {
				out.removeAcceptEncoding, out.removeAcceptEncodingSet = v.GetValue(), true
			}
		}
	default:
		return nil, configerr.At(ctx.Path, "one of disabled or overrides is required")
	}
	return out, nil
}
