package decompressor

import (
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	decompressorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/decompressor/v3"

	"github.com/herald-proxy/herald/internal/compression"
	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*decompressorv3.Decompressor]{
		Name:   Name,
		Config: &decompressorv3.Decompressor{},
		Build:  Build,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.http.decompressor"

// directionStats are Envoy's DecompressorStats of one direction.
type directionStats struct {
	decompressed, notDecompressed      *stats.Counter
	totalUncompressed, totalCompressed *stats.Counter
}

// direction is one built direction config. Immutable.
type direction struct {
	enabled           bool
	ignoreNoTransform bool
	stats             directionStats
}

// Config is the built filter. Immutable after Build.
type Config struct {
	factory   *compression.DecompressorFactory
	encoding  string
	request   direction
	response  direction
	advertise bool
	// libraryError counts decoding errors (Envoy's zlib_data_error,
	// brotli_error, zstd_generic_error under the library's prefix).
	libraryError *stats.Counter
	pool         sync.Pool
}

// Build interprets the filter's Decompressor once per snapshot.
func Build(cfg *decompressorv3.Decompressor, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	path := ctx.Path
	errs := configerr.RejectUnlisted(cfg, path, nil, "decompressor_library", "request_direction_config", "response_direction_config")
	errs = append(errs, configerr.RejectUnlisted(cfg.GetRequestDirectionConfig(), path+".request_direction_config", nil, "common_config", "advertise_accept_encoding")...)
	errs = append(errs, configerr.RejectUnlisted(cfg.GetResponseDirectionConfig(), path+".response_direction_config", nil, "common_config")...)
	lib := cfg.GetDecompressorLibrary()
	factory, err := compression.BuildDecompressor(lib, path+".decompressor_library")
	errs = append(errs, configerr.Collect(err, path+".decompressor_library", nil)...)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	// Envoy (DecompressorFilterConfig): "<stat_prefix>decompressor.<library
	// name>.<library stat prefix>", then "request." or "response.".
	prefix := ctx.StatPrefix + "decompressor." + lib.GetName() + "." + factory.StatPrefix
	c := &Config{
		factory:      factory,
		encoding:     factory.Encoding,
		request:      buildDirection(cfg.GetRequestDirectionConfig().GetCommonConfig(), ctx.Stats.Scope(prefix+"request.")),
		response:     buildDirection(cfg.GetResponseDirectionConfig().GetCommonConfig(), ctx.Stats.Scope(prefix+"response.")),
		advertise:    true,
		libraryError: ctx.Stats.Counter(prefix + factory.ErrorStat),
	}
	// Envoy: advertise_accept_encoding "Defaults to true".
	if v := cfg.GetRequestDirectionConfig().GetAdvertiseAcceptEncoding(); v != nil {
		c.advertise = v.GetValue()
	}
	return c.newFilter, nil
}

func buildDirection(m *decompressorv3.Decompressor_CommonDirectionConfig, sc stats.Scope) direction {
	return direction{
		enabled:           featureEnabled(m.GetEnabled()),
		ignoreNoTransform: m.GetIgnoreNoTransformHeader(),
		stats: directionStats{
			decompressed:      sc.Counter("decompressed"),
			notDecompressed:   sc.Counter("not_decompressed"),
			totalUncompressed: sc.Counter("total_uncompressed_bytes"),
			totalCompressed:   sc.Counter("total_compressed_bytes"),
		},
	}
}

// featureEnabled is a RuntimeFeatureFlag without a runtime: its
// default_value; "If the message is unspecified, the filter will be
// enabled."
func featureEnabled(f *corev3.RuntimeFeatureFlag) bool {
	if f == nil || f.GetDefaultValue() == nil {
		return true
	}
	return f.GetDefaultValue().GetValue()
}

func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f, _ := c.pool.Get().(*Filter)
	if f == nil {
		f = &Filter{}
	}
	f.cfg, f.cb = c, cb
	return f
}

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cfg *Config
	cb  httpfilter.Callbacks

	req, resp       compression.Decompressor
	reqErr, respErr bool
	// reqBuf and respBuf hold one decoded chunk each; a direction's chunk
	// may still be in use while the other direction runs (the router
	// reads the response from within the request's last DecodeData).
	reqBuf, respBuf []byte
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// DecompressorFilter::decodeHeaders.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	if endStream {
		return httpfilter.Continue
	}
	c := f.cfg
	if c.response.enabled && c.advertise {
		// appendAcceptEncoding(encoding, ",").
		if v, ok := h.Lookup("accept-encoding"); ok && v != "" {
			h.Set("accept-encoding", v+","+c.encoding)
		} else {
			h.Set("accept-encoding", c.encoding)
		}
	}
	f.req = f.maybeInit(&c.request, h)
	return httpfilter.Continue
}

// maybeInit is maybeInitDecompress: a decompressor when the direction is
// enabled, no-transform does not forbid it and the first content-encoding
// is the library's; the coding is removed and so is content-length.
func (f *Filter) maybeInit(d *direction, h *hhttp.Headers) compression.Decompressor {
	if !d.enabled || (!d.ignoreNoTransform && hasToken(h.Get("cache-control"), "no-transform")) || !f.encodingMatches(h) {
		d.stats.notDecompressed.Inc()
		return nil
	}
	d.stats.decompressed.Inc()
	all := h.Get("content-encoding")
	if _, rest, ok := strings.Cut(all, ","); ok {
		h.Set("content-encoding", strings.TrimSpace(rest))
	} else {
		h.Del("content-encoding")
	}
	h.Del("content-length")
	return f.cfg.factory.New()
}

// encodingMatches: the first coding of content-encoding, compared
// case-insensitively (contentEncodingMatches).
func (f *Filter) encodingMatches(h *hhttp.Headers) bool {
	v, ok := h.Lookup("content-encoding")
	if !ok {
		return false
	}
	first, _, _ := strings.Cut(v, ",")
	return strings.EqualFold(strings.TrimSpace(first), f.cfg.encoding)
}

// DecodeData implements httpfilter.DecoderFilter: decompressed bytes go on
// through InjectDecodedData.
func (f *Filter) DecodeData(data []byte, endStream bool) httpfilter.Status {
	if f.req == nil {
		return httpfilter.Continue
	}
	out := f.decompress(f.req, &f.cfg.request, &f.reqErr, &f.reqBuf, data, endStream)
	if endStream {
		f.release(&f.req)
	}
	f.cb.InjectDecodedData(out, endStream)
	return httpfilter.Stop
}

// DecodeTrailers implements httpfilter.DecoderFilter: the compressed
// stream ends before the trailers.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status {
	if f.req == nil {
		return httpfilter.Continue
	}
	out := f.decompress(f.req, &f.cfg.request, &f.reqErr, &f.reqBuf, nil, true)
	f.release(&f.req)
	if len(out) > 0 {
		f.cb.InjectDecodedData(out, false)
	}
	return httpfilter.Continue
}

// EncodeHeaders implements httpfilter.EncoderFilter.
func (f *Filter) EncodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	if !endStream {
		f.resp = f.maybeInit(&f.cfg.response, h)
	}
	return httpfilter.Continue
}

// EncodeData implements httpfilter.EncoderFilter: decompressed bytes go on
// through Callbacks.EncodeData.
func (f *Filter) EncodeData(data []byte, endStream bool) httpfilter.Status {
	if f.resp == nil {
		return httpfilter.Continue
	}
	out := f.decompress(f.resp, &f.cfg.response, &f.respErr, &f.respBuf, data, endStream)
	if endStream {
		f.release(&f.resp)
	}
	f.cb.EncodeData(out, endStream)
	return httpfilter.Stop
}

// EncodeTrailers implements httpfilter.EncoderFilter.
func (f *Filter) EncodeTrailers(*hhttp.Headers) httpfilter.Status {
	if f.resp == nil {
		return httpfilter.Continue
	}
	out := f.decompress(f.resp, &f.cfg.response, &f.respErr, &f.respBuf, nil, true)
	f.release(&f.resp)
	if len(out) > 0 {
		f.cb.EncodeData(out, false)
	}
	return httpfilter.Continue
}

// decompress decodes one chunk. After a decoding error the library's
// error stat counts once and the rest of the body is dropped: the body
// ends with what could be decoded, as Envoy's decompressors stop
// producing output.
func (f *Filter) decompress(d compression.Decompressor, dir *direction, failed *bool, buf *[]byte, data []byte, end bool) []byte {
	if *failed {
		return nil
	}
	out, err := d.Decompress((*buf)[:0], data, end)
	*buf = out[:0]
	dir.stats.totalCompressed.Add(uint64(len(data)))
	dir.stats.totalUncompressed.Add(uint64(len(out)))
	if err != nil {
		*failed = true
		f.cfg.libraryError.Inc()
	}
	return out
}

func (f *Filter) release(d *compression.Decompressor) {
	if *d != nil {
		(*d).Release()
		*d = nil
	}
}

// OnDestroy implements httpfilter.Destroyer.
func (f *Filter) OnDestroy() {
	f.release(&f.req)
	f.release(&f.resp)
	c := f.cfg
	*f = Filter{reqBuf: keep(f.reqBuf), respBuf: keep(f.respBuf)}
	c.pool.Put(f)
}

// hasToken reports whether the comma-separated list v holds tok,
// case-insensitively.
func hasToken(v, tok string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.TrimSpace(t), tok) {
			return true
		}
	}
	return false
}

// keep returns b emptied for the next stream, or nil when it grew large.
func keep(b []byte) []byte {
	if cap(b) > 64<<10 {
		return nil
	}
	return b[:0]
}
