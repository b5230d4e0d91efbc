package grpcweb

import (
	"encoding/base64"
	"encoding/binary"
	"strconv"
	"strings"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/connmgr"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cb httpfilter.Callbacks

	isGRPCWeb    bool
	textRequest  bool
	textResponse bool

	// pending holds the request's base64 bytes that do not make a whole
	// 4-byte quantum yet (at most 3).
	pending  [4]byte
	npending int
	decoded  []byte

	// transform: the response is not gRPC; its body becomes grpc-message
	// (Envoy's needs_transformation_for_non_proto_encoded_response_).
	transform bool
	held      *hhttp.Headers
	message   []byte

	// frames holds response bytes of a text response that do not make a
	// whole gRPC frame yet; encoded is the base64 output.
	frames  []byte
	encoded []byte
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
)

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// GrpcWebFilter::decodeHeaders. Requests whose content-type is not exactly
// one of the four gRPC-Web types pass through untouched.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	if !isGRPCWebRequest(h) {
		return httpfilter.Continue
	}
	f.isGRPCWeb = true
	// Envoy: content-length is the HTTP/1.1 payload size, not the sum of
	// the h2 DATA frames'.
	h.Del("content-length")
	switch h.Get("content-type") {
	case contentTypeGRPCWebText, contentTypeGRPCWebTextProto:
		f.textRequest = true
	}
	h.Set("content-type", contentTypeGRPC)
	switch h.Get("accept") {
	case contentTypeGRPCWebText, contentTypeGRPCWebTextProto:
		f.textResponse = true
	}
	h.Set("te", "trailers")
	h.SetIfAbsent("grpc-accept-encoding", grpcAcceptEncodingDefault)
	return httpfilter.Continue
}

func isGRPCWebRequest(h *hhttp.Headers) bool {
	if !h.Has(hhttp.Path) {
		return false
	}
	switch h.Get("content-type") {
	case contentTypeGRPCWeb, contentTypeGRPCWebProto, contentTypeGRPCWebText, contentTypeGRPCWebTextProto:
		return true
	}
	return false
}

// DecodeData implements httpfilter.DecoderFilter: a text request's body is
// base64-decoded in whole 4-byte quanta, the rest kept for the next chunk,
// and passed on with InjectDecodedData (Envoy's decodeData).
func (f *Filter) DecodeData(data []byte, endStream bool) httpfilter.Status {
	if !f.textRequest {
		return httpfilter.Continue
	}
	out, code, ok := f.decodeText(data, endStream)
	if !ok {
		f.cb.SendLocalReply(400, bodyInvalidBase64, code, nil)
		return httpfilter.Stop
	}
	if len(out) > 0 || endStream {
		f.cb.InjectDecodedData(out, endStream)
	}
	return httpfilter.Stop
}

// decodeText decodes what data completes; on failure it returns the
// response code details.
func (f *Filter) decodeText(data []byte, endStream bool) ([]byte, string, bool) {
	available := f.npending + len(data)
	if endStream && available%4 != 0 {
		// Envoy: "Client end stream with invalid base64. Note, base64
		// padding is mandatory."
		return nil, detailsDecodeFailedBadSize, false
	}
	out := f.decoded[:0]
	if f.npending > 0 {
		n := copy(f.pending[f.npending:], data)
		f.npending += n
		data = data[n:]
		if f.npending < 4 {
			return out, "", true
		}
		var ok bool
		if out, ok = decodeQuanta(out, f.pending[:]); !ok {
			return nil, detailsDecodeFailed, false
		}
		f.npending = 0
	}
	whole := len(data) / 4 * 4
	var ok bool
	if out, ok = decodeQuanta(out, data[:whole]); !ok {
		return nil, detailsDecodeFailed, false
	}
	f.npending = copy(f.pending[:], data[whole:])
	f.decoded = out
	return out, "", true
}

// decodeQuanta appends the decoding of src (a multiple of 4 bytes) to dst.
// Padding may end any quantum, so a body that concatenates separately
// encoded messages decodes too.
func decodeQuanta(dst, src []byte) ([]byte, bool) {
	for len(src) > 0 {
		// Decode up to the first padded quantum at once.
		end := len(src)
		if i := indexPad(src); i >= 0 {
			end = (i/4 + 1) * 4
		}
		n := len(dst)
		dst = grow(dst, base64.StdEncoding.DecodedLen(end))
		w, err := base64.StdEncoding.Decode(dst[n:], src[:end])
		if err != nil {
			return dst[:n], false
		}
		dst = dst[:n+w]
		src = src[end:]
	}
	return dst, true
}

func indexPad(b []byte) int {
	for i, c := range b {
		if c == '=' {
			return i
		}
	}
	return -1
}

func grow(b []byte, n int) []byte {
	if cap(b)-len(b) < n {
		nb := make([]byte, len(b), len(b)+n)
		copy(nb, b)
		b = nb
	}
	return b[:len(b)+n]
}

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status {
	return httpfilter.Continue
}

// EncodeHeaders implements httpfilter.EncoderFilter: Envoy's
// GrpcWebFilter::encodeHeaders. A response that is neither gRPC nor
// proto-encoded gRPC-Web is held until its body, which becomes
// grpc-message.
func (f *Filter) EncodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	if !f.isGRPCWeb {
		return httpfilter.Continue
	}
	f.transform = !hhttp.IsGRPCResponseHeaders(h, endStream) && !isProtoGRPCWebResponse(h)
	h.Del("content-length")
	if f.textResponse {
		h.Set("content-type", contentTypeGRPCWebTextProto)
	} else {
		h.Set("content-type", contentTypeGRPCWebProto)
	}
	if endStream || !f.transform {
		return httpfilter.Continue
	}
	// The rare path: keep a copy, the caller's headers may not outlive
	// the call.
	f.held = h.Clone()
	return httpfilter.Stop
}

// isProtoGRPCWebResponse is isProtoEncodedGrpcWebResponseHeaders: :status
// 200 and a gRPC-Web proto content-type, parameters ignored, compared
// case-insensitively.
func isProtoGRPCWebResponse(h *hhttp.Headers) bool {
	if h.StatusCode() != 200 {
		return false
	}
	ct := h.Get("content-type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimRight(ct, " \t")
	return strings.EqualFold(ct, contentTypeGRPCWebProto) || strings.EqualFold(ct, contentTypeGRPCWeb)
}

// EncodeData implements httpfilter.EncoderFilter: Envoy's
// GrpcWebFilter::encodeData.
func (f *Filter) EncodeData(data []byte, endStream bool) httpfilter.Status {
	if !f.isGRPCWeb {
		return httpfilter.Continue
	}
	if f.transform {
		if !endStream {
			// Envoy buffers at most MAX_BUFFERED_PLAINTEXT_LENGTH.
			if len(f.message) < maxBufferedPlaintextLength {
				f.message = append(f.message, data...)
			}
			return httpfilter.Stop
		}
		if len(f.message) == 0 {
			// A single chunk is used whole (Envoy: no encoding buffer).
			f.message = append(f.message, data...)
		} else {
			f.message = append(f.message, data...)
			if len(f.message) > maxBufferedPlaintextLength {
				f.message = f.message[:maxBufferedPlaintextLength]
			}
		}
		f.sendTransformed()
		return httpfilter.Stop
	}
	if !f.textResponse {
		return httpfilter.Continue
	}
	out := f.encodeFrames(data)
	if len(out) == 0 && !endStream {
		return httpfilter.Stop
	}
	f.cb.EncodeData(out, endStream)
	return httpfilter.Stop
}

// encodeFrames base64-encodes every whole gRPC frame data completes, each
// frame on its own (padded), as Envoy does; a partial frame waits.
func (f *Filter) encodeFrames(data []byte) []byte {
	buf := data
	if len(f.frames) > 0 {
		f.frames = append(f.frames, data...)
		buf = f.frames
	}
	out := f.encoded[:0]
	for len(buf) >= frameHeaderLength {
		n := frameHeaderLength + int(binary.BigEndian.Uint32(buf[1:5]))
		if n < frameHeaderLength || len(buf) < n {
			break
		}
		out = base64.StdEncoding.AppendEncode(out, buf[:n])
		buf = buf[n:]
	}
	f.encoded = out
	if len(f.frames) > 0 {
		f.frames = append(f.frames[:0], buf...)
	} else if len(buf) > 0 {
		f.frames = append(f.frames, buf...)
	}
	return out
}

// sendTransformed is setTransformedNonProtoEncodedResponseHeaders: the
// held headers go on with grpc-status from the HTTP status, grpc-message
// from the body and content-length 0; the body is dropped.
func (f *Filter) sendTransformed() {
	h := f.held
	f.held, f.transform = nil, false
	h.Set("grpc-message", connmgr.GRPCPercentEncode(string(f.message)))
	h.Set("grpc-status", strconv.Itoa(connmgr.GRPCStatusFromHTTP(h.StatusCode())))
	h.Set("content-length", "0")
	f.cb.EncodeHeaders(h, true)
}

// EncodeTrailers implements httpfilter.EncoderFilter: the trailers become
// one trailer frame (flag 0x80, big-endian length, "name:value\r\n" per
// trailer) that ends the body; no trailers go downstream.
func (f *Filter) EncodeTrailers(t *hhttp.Headers) httpfilter.Status {
	if !f.isGRPCWeb {
		return httpfilter.Continue
	}
	if f.transform {
		f.sendTransformed()
		return httpfilter.Stop
	}
	frame := AppendTrailerFrame(nil, t)
	if f.textResponse {
		frame = base64.StdEncoding.AppendEncode(nil, frame)
	}
	f.cb.EncodeData(frame, true)
	return httpfilter.Stop
}

// AppendTrailerFrame appends to dst the gRPC-Web trailer frame of t: flag
// 0x80, the big-endian payload length, then "name:value\r\n" per field in
// order (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md).
func AppendTrailerFrame(dst []byte, t *hhttp.Headers) []byte {
	start := len(dst)
	dst = append(dst, trailerFrameFlag, 0, 0, 0, 0)
	for _, fl := range t.Fields {
		dst = append(dst, fl.Name...)
		dst = append(dst, ':')
		dst = append(dst, fl.Value...)
		dst = append(dst, '\r', '\n')
	}
	binary.BigEndian.PutUint32(dst[start+1:start+5], uint32(len(dst)-start-frameHeaderLength))
	return dst
}
