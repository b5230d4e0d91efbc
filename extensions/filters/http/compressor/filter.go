package compressor

import (
	"slices"
	"strconv"
	"strings"

	"github.com/herald-proxy/herald/internal/compression"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// chainKey keys the stream's chain (httpfilter.StreamState).
type chainKey struct{}

// chain is every compressor filter of a stream's filter chain and the
// encoding chosen for the response, shared by them as Envoy shares its
// CompressorRegistry and "encoding_decision" filter state: the first
// compressor filter to encode the response decides for all.
type chain struct {
	configs  []*Config
	decided  bool
	decision decision
}

func newChain() any { return &chain{} }

func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f, _ := c.pool.Get().(*Filter)
	if f == nil {
		f = &Filter{}
	}
	f.cfg, f.cb = c, cb
	// Envoy registers the filter in the stream's registry when it is
	// created (setDecoderFilterCallbacks).
	if ss, ok := cb.(httpfilter.StreamState); ok {
		f.chain = ss.StreamValue(chainKey{}, newChain).(*chain)
	} else {
		f.own = chain{configs: f.own.configs[:0]}
		f.chain = &f.own
	}
	f.chain.configs = append(f.chain.configs, c)
	return f
}

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cfg   *Config
	cb    httpfilter.Callbacks
	chain *chain
	own   chain

	// acceptEncoding is the request's accept-encoding, captured before
	// remove_accept_encoding_header may remove it.
	acceptEncoding string
	hasAccept      bool
	isHead         bool

	reqComp, respComp compression.Compressor
	// reqBuf and respBuf hold one compressed chunk each; a direction's
	// chunk may still be in use while the other direction runs.
	reqBuf, respBuf []byte
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

func (f *Filter) perRoute() *PerRoute {
	if r := f.cb.Route(); r != nil {
		pr, _ := r.PerFilterConfig(f.cfg.name).(*PerRoute)
		return pr
	}
	return nil
}

// responseEnabled is CompressorFilter::compressionEnabled.
func (f *Filter) responseEnabled(pr *PerRoute) bool {
	if pr != nil && pr.responseEnabledSet {
		return pr.responseEnabled
	}
	return f.cfg.response.enabled
}

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// CompressorFilter::decodeHeaders.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	c := f.cfg
	f.isHead = h.Method() == "HEAD"
	if n := h.Count("accept-encoding"); n > 0 {
		f.hasAccept = true
		if n == 1 {
			f.acceptEncoding = h.Get("accept-encoding")
		} else {
			f.acceptEncoding = strings.Join(h.Values(nil, "accept-encoding"), ",")
		}
	}
	pr := f.perRoute()
	remove := c.removeAcceptEncoding
	if pr != nil && pr.removeAcceptEncodingSet {
		remove = pr.removeAcceptEncoding
	}
	if remove && f.responseEnabled(pr) {
		h.Del("accept-encoding")
	}
	rd := &c.request
	if !endStream && c.requestSet && rd.enabled && !isUpgrade(h) &&
		rd.minimumLength(h) && rd.contentTypeAllowed(h) &&
		!h.Has("content-encoding") && f.transferEncodingAllowed(h) {
		h.Del("content-length")
		h.Set("content-encoding", c.encoding)
		rd.stats.compressed.Inc()
		f.reqComp = c.factory.New()
	} else {
		rd.stats.notCompressed.Inc()
	}
	return httpfilter.Continue
}

// DecodeData implements httpfilter.DecoderFilter: compressed data goes on
// through InjectDecodedData, one flushed piece per chunk.
func (f *Filter) DecodeData(data []byte, endStream bool) httpfilter.Status {
	if f.reqComp == nil {
		return httpfilter.Continue
	}
	out, ok := f.compress(f.reqComp, &f.cfg.request, &f.reqBuf, data, endStream)
	if !ok {
		return httpfilter.Stop
	}
	if endStream {
		f.releaseRequest()
	}
	f.cb.InjectDecodedData(out, endStream)
	return httpfilter.Stop
}

// DecodeTrailers implements httpfilter.DecoderFilter: the compressed
// stream ends before the trailers (CompressorFilter::decodeTrailers).
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status {
	if f.reqComp == nil {
		return httpfilter.Continue
	}
	out, ok := f.compress(f.reqComp, &f.cfg.request, &f.reqBuf, nil, true)
	f.releaseRequest()
	if !ok {
		return httpfilter.Stop
	}
	f.cb.InjectDecodedData(out, false)
	return httpfilter.Continue
}

// EncodeHeaders implements httpfilter.EncoderFilter: Envoy's
// CompressorFilter::encodeHeaders.
func (f *Filter) EncodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	c := f.cfg
	rd := &c.response
	status := h.StatusCode()
	enabledAndLong := f.responseEnabled(f.perRoute()) && rd.minimumLength(h)
	compressible := enabledAndLong && !isUpgrade(h) && rd.contentTypeAllowed(h) &&
		!hasToken(h.Get("cache-control"), "no-transform") && f.etagAllowed(h) &&
		!h.Has("content-encoding") && f.statusAllowed(status)
	if !endStream && f.acceptEncodingAllowed(enabledAndLong, h) && compressible && f.transferEncodingAllowed(h) {
		f.sanitizeEtag(h)
		h.Del("content-length")
		h.Set("content-encoding", c.encoding)
		rd.stats.compressed.Inc()
		f.respComp = c.factory.New()
	} else {
		rd.stats.notCompressed.Inc()
	}
	// Envoy: "Even if we decided not to compress due to incompatible
	// Accept-Encoding value, the Vary header would need to be inserted".
	if compressible {
		insertVary(h)
	}
	return httpfilter.Continue
}

// statusAllowed: responses without a body (HEAD, 1xx, 204, 304) are never
// compressed — Envoy sees them with end_stream set — nor are
// uncompressible_response_codes.
func (f *Filter) statusAllowed(status int) bool {
	if f.isHead || status < 200 || status == 204 || status == 304 {
		return false
	}
	return !slices.Contains(f.cfg.uncompressible, status)
}

// EncodeData implements httpfilter.EncoderFilter: each chunk is
// compressed and flushed on through Callbacks.EncodeData.
func (f *Filter) EncodeData(data []byte, endStream bool) httpfilter.Status {
	if f.respComp == nil {
		return httpfilter.Continue
	}
	out, ok := f.compress(f.respComp, &f.cfg.response, &f.respBuf, data, endStream)
	if !ok {
		return httpfilter.Stop
	}
	if endStream {
		f.releaseResponse()
	}
	f.cb.EncodeData(out, endStream)
	return httpfilter.Stop
}

// EncodeTrailers implements httpfilter.EncoderFilter: the compressed
// stream ends before the trailers.
func (f *Filter) EncodeTrailers(*hhttp.Headers) httpfilter.Status {
	if f.respComp == nil {
		return httpfilter.Continue
	}
	out, ok := f.compress(f.respComp, &f.cfg.response, &f.respBuf, nil, true)
	f.releaseResponse()
	if !ok {
		return httpfilter.Stop
	}
	f.cb.EncodeData(out, false)
	return httpfilter.Continue
}

// compress is compressAndUpdateStats. A compressor error (never expected:
// the libraries write to memory) resets the stream.
func (f *Filter) compress(comp compression.Compressor, d *direction, buf *[]byte, data []byte, end bool) ([]byte, bool) {
	out, err := comp.Compress((*buf)[:0], data, end)
	*buf = out[:0]
	d.stats.totalUncompressed.Add(uint64(len(data)))
	d.stats.totalCompressed.Add(uint64(len(out)))
	if err != nil {
		f.cb.SendLocalReply(500, "", "compressor_error", nil)
		return nil, false
	}
	return out, true
}

func (f *Filter) releaseRequest() {
	if f.reqComp != nil {
		f.reqComp.Release()
		f.reqComp = nil
	}
}

func (f *Filter) releaseResponse() {
	if f.respComp != nil {
		f.respComp.Release()
		f.respComp = nil
	}
}

// OnDestroy implements httpfilter.Destroyer.
func (f *Filter) OnDestroy() {
	f.releaseRequest()
	f.releaseResponse()
	c, own := f.cfg, f.own.configs[:0]
	*f = Filter{reqBuf: keep(f.reqBuf), respBuf: keep(f.respBuf)}
	f.own.configs = own
	c.pool.Put(f)
}

// minimumLength is isMinimumContentLength: true without content-length;
// with one, it must parse and be at least min_content_length.
func (d *direction) minimumLength(h *hhttp.Headers) bool {
	v, ok := h.Lookup("content-length")
	if !ok {
		return true
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n < d.minContentLength {
		d.stats.contentLengthTooSmall.Inc()
		return false
	}
	return true
}

// contentTypeAllowed is isContentTypeAllowed: the media type before any
// parameter, compared case-insensitively; no content-type is allowed.
func (d *direction) contentTypeAllowed(h *hhttp.Headers) bool {
	v, ok := h.Lookup("content-type")
	if !ok {
		return true
	}
	_, allowed := d.contentTypes[mediaType(v)]
	return allowed
}

func mediaType(v string) string {
	if i := strings.IndexByte(v, ';'); i >= 0 {
		v = v[:i]
	}
	v = strings.TrimSpace(v)
	for i := 0; i < len(v); i++ {
		if c := v[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(v)
		}
	}
	return v
}

// etagAllowed is isEtagAllowed; weaken_etag_on_compress takes precedence
// over disable_on_etag_header.
func (f *Filter) etagAllowed(h *hhttp.Headers) bool {
	if f.cfg.disableOnEtag && !f.cfg.weakenEtag && h.Has("etag") {
		f.cfg.rstats.notCompressedEtag.Inc()
		return false
	}
	return true
}

// sanitizeEtag is sanitizeEtagHeader: a strong etag is removed (weak ones
// are kept) or, with weaken_etag_on_compress, made weak.
func (f *Filter) sanitizeEtag(h *hhttp.Headers) {
	v, ok := h.Lookup("etag")
	if !ok || len(v) <= 2 || ((v[0] == 'w' || v[0] == 'W') && v[1] == '/') {
		return
	}
	if f.cfg.weakenEtag {
		h.Set("etag", "W/"+v)
		return
	}
	h.Del("etag")
}

// transferEncodingAllowed is isTransferEncodingAllowed: not when a
// transfer-encoding already compresses.
func (f *Filter) transferEncodingAllowed(h *hhttp.Headers) bool {
	v, ok := h.Lookup("transfer-encoding")
	if !ok {
		return true
	}
	for _, tok := range strings.Split(v, ",") {
		switch t := strings.TrimSpace(tok); {
		case strings.EqualFold(t, "gzip"), strings.EqualFold(t, "br"), strings.EqualFold(t, "deflate"),
			strings.EqualFold(t, "compress"), strings.EqualFold(t, "zstd"), strings.EqualFold(t, f.cfg.encoding):
			return false
		}
	}
	return true
}

func isUpgrade(h *hhttp.Headers) bool {
	return h.Has("upgrade") && hasToken(h.Get("connection"), "upgrade")
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

// insertVary adds accept-encoding to vary unless it is there.
func insertVary(h *hhttp.Headers) {
	v, ok := h.Lookup("vary")
	if !ok {
		h.Set("vary", "accept-encoding")
		return
	}
	if !hasToken(v, "accept-encoding") {
		h.Set("vary", v+", accept-encoding")
	}
}

// keep returns b emptied for the next stream, or nil when it grew large.
func keep(b []byte) []byte {
	if cap(b) > 64<<10 {
		return nil
	}
	return b[:0]
}
