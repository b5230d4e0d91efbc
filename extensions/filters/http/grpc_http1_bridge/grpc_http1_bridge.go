package grpchttp1bridge

import (
	"encoding/binary"
	"strconv"
	"strings"

	grpchttp1bridgev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_http1_bridge/v3"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*grpchttp1bridgev3.Config]{
		Name:   Name,
		Config: &grpchttp1bridgev3.Config{},
		Build:  Build,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.http.grpc_http1_bridge"

const (
	contentTypeGRPC     = "application/grpc"
	contentTypeProtobuf = "application/x-protobuf"
	frameHeaderLength   = 5
	// detailsResponseTooLarge is Envoy's response code details when an
	// encoder filter's buffer overflows before the headers went out.
	detailsResponseTooLarge = "response_payload_too_large"
)

// Config is the built filter. Immutable.
type Config struct {
	upgradeProtobuf bool
	ignoreQuery     bool
}

// Build interprets the filter's Config once per snapshot.
func Build(cfg *grpchttp1bridgev3.Config, _ httpfilter.BuildContext) (httpfilter.Factory, error) {
	c := &Config{upgradeProtobuf: cfg.GetUpgradeProtobufToGrpc(), ignoreQuery: cfg.GetIgnoreQueryParameters()}
	return c.newFilter, nil
}

func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	return &Filter{cfg: c, cb: cb}
}

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cfg *Config
	cb  httpfilter.Callbacks

	// bridging: an HTTP/1 gRPC request whose response is buffered until
	// its trailers (Envoy's do_bridging_); framing: the request was
	// upgraded from application/x-protobuf (do_framing_).
	bridging, framing bool
	held              *hhttp.Headers
	body              []byte
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
)

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// Http1BridgeFilter::decodeHeaders.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	if f.cfg.upgradeProtobuf && h.Get("content-type") == contentTypeProtobuf && !endStream {
		// A headers-only request cannot get a body here (Envoy adds an
		// empty frame with addDecodedData): it goes on unframed.
		if st, ok := f.frameRequest(h); !ok {
			return st
		}
	}
	if !f.http1() || !h.Has(hhttp.Path) || !hhttp.IsGRPCContentType(h.Get("content-type")) {
		return httpfilter.Continue
	}
	f.bridging = true
	if f.cfg.ignoreQuery {
		if p := h.Path(); strings.IndexByte(p, '?') >= 0 {
			h.Set(hhttp.Path, p[:strings.IndexByte(p, '?')])
			f.cb.ClearRouteCache()
		}
	}
	return httpfilter.Continue
}

// frameRequest turns an application/x-protobuf request into a gRPC one:
// the whole body becomes one gRPC message. ok is false when the stream
// was answered.
func (f *Filter) frameRequest(h *hhttp.Headers) (httpfilter.Status, bool) {
	body, _, err := f.cb.BufferRequestBody(f.cb.BufferLimit())
	switch {
	case err == httpfilter.ErrBodyTooLarge:
		f.cb.SendLocalReply(413, httpfilter.BodyTooLarge, httpfilter.DetailsBodyTooLarge, nil)
		return httpfilter.Stop, false
	case err != nil:
		return httpfilter.Stop, false
	}
	framed := make([]byte, frameHeaderLength, frameHeaderLength+len(body))
	binary.BigEndian.PutUint32(framed[1:], uint32(len(body)))
	f.cb.SetBufferedRequestBody(append(framed, body...))
	f.framing = true
	h.Set("content-type", contentTypeGRPC)
	h.Set("te", "trailers")
	h.Del("content-length")
	f.cb.ClearRouteCache()
	return httpfilter.Continue, true
}

func (f *Filter) http1() bool {
	p := f.cb.StreamInfo().Protocol
	return p == "HTTP/1.1" || p == "HTTP/1.0"
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// EncodeHeaders implements httpfilter.EncoderFilter: a bridged response's
// headers wait for its trailers; a trailers-only one is fixed up at once.
func (f *Filter) EncodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	if !f.bridging {
		return httpfilter.Continue
	}
	if endStream {
		updateStatus(h, h, 0)
		return httpfilter.Continue
	}
	f.held = h.Clone()
	return httpfilter.Stop
}

// EncodeData implements httpfilter.EncoderFilter: the body is buffered
// (up to the stream's buffer limit, as Envoy's StopIterationAndBuffer);
// a body that ends without trailers goes on as it is.
func (f *Filter) EncodeData(data []byte, endStream bool) httpfilter.Status {
	if !f.bridging || f.held == nil {
		return httpfilter.Continue
	}
	f.body = append(f.body, data...)
	if !endStream {
		if len(f.body) > f.cb.BufferLimit() {
			f.held, f.body, f.bridging = nil, nil, false
			f.cb.SendLocalReply(500, "", detailsResponseTooLarge, nil)
		}
		return httpfilter.Stop
	}
	h, body := f.held, f.body
	f.held, f.body = nil, nil
	if f.cb.EncodeHeaders(h, false) == nil {
		f.cb.EncodeData(body, true)
	}
	return httpfilter.Stop
}

// EncodeTrailers implements httpfilter.EncoderFilter: grpc-status and
// grpc-message move to the headers (a non-zero or unparsable grpc-status
// makes the status 503), content-length is the buffered body's and, for an
// upgraded request, the body loses its gRPC frame header; the trailers are
// dropped, as Envoy's HTTP/1 codec drops them.
func (f *Filter) EncodeTrailers(t *hhttp.Headers) httpfilter.Status {
	if !f.bridging || f.held == nil {
		return httpfilter.Continue
	}
	h, body := f.held, f.body
	f.held, f.body = nil, nil
	if f.framing && len(body) >= frameHeaderLength {
		body = body[frameHeaderLength:]
	}
	updateStatus(h, t, len(body))
	if len(body) == 0 {
		f.cb.EncodeHeaders(h, true)
		return httpfilter.Stop
	}
	if f.cb.EncodeHeaders(h, false) == nil {
		f.cb.EncodeData(body, true)
	}
	return httpfilter.Stop
}

// updateStatus is updateHttpStatusAndContentLength: from's grpc-status and
// grpc-message go to h.
func updateStatus(h, from *hhttp.Headers, contentLength int) {
	if st, ok := from.Lookup("grpc-status"); ok {
		if n, err := strconv.ParseUint(st, 10, 64); err != nil || n != 0 {
			h.SetStatus(503)
		}
		h.Set("grpc-status", st)
	}
	if msg, ok := from.Lookup("grpc-message"); ok {
		h.Set("grpc-message", msg)
	}
	h.Set("content-length", strconv.Itoa(contentLength))
}
