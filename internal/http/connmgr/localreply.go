package connmgr

import (
	"strconv"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// sendLocalReply answers the stream from herald itself, as Envoy's
// sendLocalReply: a text/plain body (or, for gRPC requests, a trailers-only
// response with grpc-status and grpc-message), response_code_details set.
// When the response already started it can only reset the stream.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/local_reply
func (as *stream) sendLocalReply(code int, body, details string, modify func(*hhttp.Headers)) {
	as.info.ResponseCodeDetails = details
	if as.responseStarted {
		// Too late for a reply: the downstream sees a reset (HTTP/1.1: the
		// connection closes without completing the response).
		as.info.SetFlag(streaminfo.LocalReset)
		as.closeConn = true
		as.responseComplete = true
		as.abortUpstream()
		return
	}
	h := &hhttp.Headers{Fields: make([]hhttp.HeaderField, 0, 6)}
	if as.isGRPC {
		h.Add(hhttp.Status, "200")
		h.Add("content-type", "application/grpc")
		h.Add("grpc-status", strconv.Itoa(GRPCStatusFromHTTP(code)))
		if body != "" {
			h.Add("grpc-message", GRPCPercentEncode(body))
		}
		if modify != nil {
			modify(h)
		}
		as.EncodeHeaders(h, true)
		return
	}
	h.Add(hhttp.Status, hhttp.StatusText3(code))
	if body != "" {
		h.Add("content-length", strconv.Itoa(len(body)))
		h.Add("content-type", "text/plain")
	}
	if modify != nil {
		modify(h)
	}
	if body == "" || as.isHead {
		as.EncodeHeaders(h, true)
		return
	}
	if err := as.EncodeHeaders(h, false); err != nil || as.responseComplete {
		return
	}
	as.EncodeData([]byte(body), true)
}

// GRPCStatusFromHTTP maps an HTTP status to a gRPC status code as Envoy's
// Grpc::Utility::httpToGrpcStatus (and the gRPC spec's
// doc/http-grpc-status-mapping.md).
func GRPCStatusFromHTTP(code int) int {
	switch code {
	case 400:
		return 13 // INTERNAL
	case 401:
		return 16 // UNAUTHENTICATED
	case 403:
		return 7 // PERMISSION_DENIED
	case 404:
		return 12 // UNIMPLEMENTED
	case 429, 502, 503, 504:
		return 14 // UNAVAILABLE
	default:
		return 2 // UNKNOWN
	}
}

// GRPCPercentEncode encodes a grpc-message value (gRPC spec: percent-encode
// bytes outside 0x20..0x7E and '%').
func GRPCPercentEncode(s string) string {
	need := false
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '%' {
			need = true
			break
		}
	}
	if !need {
		return s
	}
	const hex = "0123456789ABCDEF"
	out := make([]byte, 0, len(s)+8)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '%' {
			out = append(out, '%', hex[c>>4], hex[c&0xf])
			continue
		}
		out = append(out, c)
	}
	return string(out)
}

// statusText is Envoy's CodeUtility::toString for the codes a codec error
// can carry.
func statusText(code int) string {
	switch code {
	case 400:
		return "Bad Request"
	case 408:
		return "Request Timeout"
	case 413:
		return "Payload Too Large"
	case 426:
		return "Upgrade Required"
	case 431:
		return "Request Header Fields Too Large"
	case 501:
		return "Not Implemented"
	}
	return "Bad Request"
}
