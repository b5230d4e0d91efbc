package grpcweb

import (
	"encoding/base64"
	"strings"
	"testing"

	grpcwebv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_web/v3"
	"github.com/google/go-cmp/cmp"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&grpcwebv3.GrpcWeb{})
	if e, ok := httpfilter.Registry.ByTypeURL(url); !ok || e.Name != Name {
		t.Fatalf("%s registered as %v, %v", url, e, ok)
	}
}

func newFilter(t *testing.T) (*Filter, *httpfiltertest.Callbacks) {
	t.Helper()
	factory, err := Build(&grpcwebv3.GrpcWeb{}, httpfiltertest.BuildContext(Name, stats.NewStore()))
	if err != nil {
		t.Fatal(err)
	}
	cb := &httpfiltertest.Callbacks{}
	return factory(cb).(*Filter), cb
}

func request(contentType, accept string) *hhttp.Headers {
	h := httpfiltertest.Request()
	h.Set(hhttp.Method, "POST")
	h.Set(hhttp.Path, "/grpc.testing.TestService/UnaryCall")
	if contentType != "" {
		h.Add("content-type", contentType)
	}
	if accept != "" {
		h.Add("accept", accept)
	}
	h.Add("content-length", "10")
	return h
}

func TestDecodeHeaders(t *testing.T) {
	tests := []struct {
		name, contentType, accept string
		wantContentType           string
		wantTE                    string
		wantContentLength         bool
		wantText, wantTextResp    bool
	}{
		{name: "binary", contentType: "application/grpc-web", wantContentType: "application/grpc", wantTE: "trailers"},
		{name: "binary proto", contentType: "application/grpc-web+proto", wantContentType: "application/grpc", wantTE: "trailers"},
		{name: "text", contentType: "application/grpc-web-text", accept: "application/grpc-web-text", wantContentType: "application/grpc", wantTE: "trailers", wantText: true, wantTextResp: true},
		{name: "text proto, binary response", contentType: "application/grpc-web-text+proto", wantContentType: "application/grpc", wantTE: "trailers", wantText: true},
		// Envoy compares the request content-type exactly: parameters
		// make it a plain HTTP request.
		{name: "parameter passes through", contentType: "application/grpc-web; charset=utf-8", wantContentType: "application/grpc-web; charset=utf-8", wantContentLength: true},
		{name: "json passes through", contentType: "application/json", wantContentType: "application/json", wantContentLength: true},
		{name: "grpc passes through", contentType: "application/grpc", wantContentType: "application/grpc", wantContentLength: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFilter(t)
			h := request(tc.contentType, tc.accept)
			if st := f.DecodeHeaders(h, false); st != httpfilter.Continue {
				t.Fatalf("DecodeHeaders = %v, want Continue", st)
			}
			if got := h.Get("content-type"); got != tc.wantContentType {
				t.Errorf("content-type = %q, want %q", got, tc.wantContentType)
			}
			if got := h.Get("te"); got != tc.wantTE {
				t.Errorf("te = %q, want %q", got, tc.wantTE)
			}
			if got := h.Has("content-length"); got != tc.wantContentLength {
				t.Errorf("content-length present = %v, want %v", got, tc.wantContentLength)
			}
			if f.textRequest != tc.wantText || f.textResponse != tc.wantTextResp {
				t.Errorf("text request/response = %v/%v, want %v/%v", f.textRequest, f.textResponse, tc.wantText, tc.wantTextResp)
			}
			if tc.wantTE != "" && h.Get("grpc-accept-encoding") != grpcAcceptEncodingDefault {
				t.Errorf("grpc-accept-encoding = %q", h.Get("grpc-accept-encoding"))
			}
		})
	}
}

// TestDecodeText streams base64 request bodies in chunks whose boundaries
// fall anywhere inside a 4-byte quantum.
func TestDecodeText(t *testing.T) {
	msg := []byte("\x00\x00\x00\x00\x07payload")
	enc := base64.StdEncoding.EncodeToString(msg)
	two := base64.StdEncoding.EncodeToString([]byte("ab")) + base64.StdEncoding.EncodeToString([]byte("cde"))
	tests := []struct {
		name        string
		chunks      []string
		want        string
		wantDetails string
	}{
		{name: "one chunk", chunks: []string{enc}, want: string(msg)},
		{name: "split every byte", chunks: strings.Split(enc, ""), want: string(msg)},
		{name: "split at 3 and 6", chunks: []string{enc[:3], enc[3:6], enc[6:]}, want: string(msg)},
		{name: "last chunk empty", chunks: []string{enc, ""}, want: string(msg)},
		// Separately encoded, padded messages one after the other.
		{name: "padding inside", chunks: []string{two[:5], two[5:]}, want: "abcde"},
		{name: "bad size at end", chunks: []string{enc[:len(enc)-1]}, wantDetails: detailsDecodeFailedBadSize},
		{name: "bad character", chunks: []string{"AB*D"}, wantDetails: detailsDecodeFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, cb := newFilter(t)
			f.DecodeHeaders(request(contentTypeGRPCWebText, ""), false)
			for i, c := range tc.chunks {
				end := i == len(tc.chunks)-1
				if st := f.DecodeData([]byte(c), end); st != httpfilter.Stop {
					t.Fatalf("DecodeData = %v, want Stop", st)
				}
			}
			if tc.wantDetails != "" {
				if len(cb.Replies) != 1 || cb.Replies[0].Code != 400 || cb.Info.ResponseCodeDetails != tc.wantDetails {
					t.Fatalf("replies %+v details %q, want 400 %q", cb.Replies, cb.Info.ResponseCodeDetails, tc.wantDetails)
				}
				return
			}
			if got := string(cb.Injected); got != tc.want || !cb.InjectedEnd {
				t.Errorf("injected %q end=%v, want %q end=true", got, cb.InjectedEnd, tc.want)
			}
		})
	}
}

func TestBinaryRequestPassesThrough(t *testing.T) {
	f, cb := newFilter(t)
	f.DecodeHeaders(request(contentTypeGRPCWeb, ""), false)
	if st := f.DecodeData([]byte("\x00\x00\x00\x00\x00"), true); st != httpfilter.Continue {
		t.Fatalf("DecodeData = %v, want Continue", st)
	}
	if cb.Injected != nil {
		t.Fatalf("injected %q", cb.Injected)
	}
}

func trailers(kv ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	for i := 0; i < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func TestAppendTrailerFrame(t *testing.T) {
	tests := []struct {
		name string
		in   *hhttp.Headers
		want string
	}{
		{name: "empty", in: trailers(), want: "\x80\x00\x00\x00\x00"},
		{name: "status", in: trailers("grpc-status", "0"), want: "\x80\x00\x00\x00\x0fgrpc-status:0\r\n"},
		{name: "status and message", in: trailers("grpc-status", "3", "grpc-message", "bad"),
			want: "\x80\x00\x00\x00\x21grpc-status:3\r\ngrpc-message:bad\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(AppendTrailerFrame(nil, tc.in)); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func grpcResponse() *hhttp.Headers {
	h := httpfiltertest.Response(200)
	h.Add("content-type", "application/grpc")
	h.Add("content-length", "12")
	return h
}

// TestResponse runs a gRPC response (headers, data chunks, trailers)
// through the filter, binary and text.
func TestResponse(t *testing.T) {
	frame1 := "\x00\x00\x00\x00\x03abc"
	frame2 := "\x00\x00\x00\x00\x00"
	trailerFrame := "\x80\x00\x00\x00\x0fgrpc-status:0\r\n"
	b64 := base64.StdEncoding.EncodeToString
	tests := []struct {
		name            string
		accept          string
		chunks          []string
		wantContentType string
		wantBody        string
	}{
		{name: "binary", chunks: []string{frame1 + frame2}, wantContentType: contentTypeGRPCWebProto,
			wantBody: frame1 + frame2 + trailerFrame},
		{name: "text, one frame per chunk", accept: contentTypeGRPCWebText, chunks: []string{frame1, frame2},
			wantContentType: contentTypeGRPCWebTextProto, wantBody: b64([]byte(frame1)) + b64([]byte(frame2)) + b64([]byte(trailerFrame))},
		{name: "text, frames split across chunks", accept: contentTypeGRPCWebText, chunks: []string{frame1[:2], frame1[2:7], frame1[7:] + frame2[:1], frame2[1:]},
			wantContentType: contentTypeGRPCWebTextProto, wantBody: b64([]byte(frame1)) + b64([]byte(frame2)) + b64([]byte(trailerFrame))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, cb := newFilter(t)
			f.DecodeHeaders(request(contentTypeGRPCWeb, tc.accept), false)
			h := grpcResponse()
			if st := f.EncodeHeaders(h, false); st != httpfilter.Continue {
				t.Fatalf("EncodeHeaders = %v", st)
			}
			if got := h.Get("content-type"); got != tc.wantContentType || h.Has("content-length") {
				t.Errorf("content-type %q content-length %q, want %q and none", got, h.Get("content-length"), tc.wantContentType)
			}
			var body []byte
			for _, c := range tc.chunks {
				before := len(cb.Encoded)
				if st := f.EncodeData([]byte(c), false); st == httpfilter.Continue {
					body = append(body, c...)
				} else {
					body = append(body, cb.Encoded[before:]...)
				}
			}
			before := len(cb.Encoded)
			if st := f.EncodeTrailers(trailers("grpc-status", "0")); st != httpfilter.Stop {
				t.Fatalf("EncodeTrailers = %v, want Stop", st)
			}
			body = append(body, cb.Encoded[before:]...)
			if !cb.EncodedEnd {
				t.Error("trailer frame did not end the stream")
			}
			if diff := cmp.Diff(tc.wantBody, string(body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
		})
	}
}

// TestNonGRPCResponse: a response that is not gRPC (a local reply, an HTTP
// error) becomes grpc-status and grpc-message headers without a body.
func TestNonGRPCResponse(t *testing.T) {
	tests := []struct {
		name        string
		status      int
		body        []string
		trailers    bool
		wantStatus  string
		wantMessage string
	}{
		{name: "503 text body", status: 503, body: []string{"no healthy upstream"}, wantStatus: "14", wantMessage: "no healthy upstream"},
		{name: "404 two chunks", status: 404, body: []string{"not ", "found\n"}, wantStatus: "12", wantMessage: "not found%0A"},
		{name: "500 with trailers", status: 500, body: []string{"x"}, trailers: true, wantStatus: "2", wantMessage: "x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, cb := newFilter(t)
			f.DecodeHeaders(request(contentTypeGRPCWeb, ""), false)
			h := httpfiltertest.Response(tc.status)
			h.Add("content-type", "text/plain")
			if st := f.EncodeHeaders(h, false); st != httpfilter.Stop {
				t.Fatalf("EncodeHeaders = %v, want Stop", st)
			}
			for i, c := range tc.body {
				end := !tc.trailers && i == len(tc.body)-1
				if st := f.EncodeData([]byte(c), end); st != httpfilter.Stop {
					t.Fatalf("EncodeData = %v, want Stop", st)
				}
			}
			if tc.trailers {
				f.EncodeTrailers(trailers("x", "y"))
			}
			if len(cb.Replies) != 1 {
				t.Fatalf("%d responses encoded, want 1", len(cb.Replies))
			}
			got := cb.Replies[0].Headers
			if got.Get("grpc-status") != tc.wantStatus || got.Get("grpc-message") != tc.wantMessage ||
				got.Get("content-length") != "0" || got.Get("content-type") != contentTypeGRPCWebProto || got.StatusCode() != tc.status {
				t.Errorf("headers %v, want grpc-status %s grpc-message %q", got.Fields, tc.wantStatus, tc.wantMessage)
			}
			if len(cb.Encoded) != 0 {
				t.Errorf("body %q sent, want none", cb.Encoded)
			}
		})
	}
}

// TestTrailersOnly: a trailers-only gRPC response keeps grpc-status in
// its headers.
func TestTrailersOnly(t *testing.T) {
	f, cb := newFilter(t)
	f.DecodeHeaders(request(contentTypeGRPCWeb, ""), true)
	h := httpfiltertest.Response(200)
	h.Add("content-type", "application/grpc")
	h.Add("grpc-status", "12")
	if st := f.EncodeHeaders(h, true); st != httpfilter.Continue {
		t.Fatalf("EncodeHeaders = %v", st)
	}
	if h.Get("grpc-status") != "12" || h.Get("content-type") != contentTypeGRPCWebProto || len(cb.Replies) != 0 {
		t.Errorf("headers %v", h.Fields)
	}
}

func TestNonGRPCWebRequestUntouched(t *testing.T) {
	f, cb := newFilter(t)
	f.DecodeHeaders(request("application/json", ""), false)
	h := httpfiltertest.Response(503)
	h.Add("content-type", "text/plain")
	if f.EncodeHeaders(h, false) != httpfilter.Continue || f.EncodeData([]byte("x"), true) != httpfilter.Continue ||
		f.EncodeTrailers(trailers("a", "b")) != httpfilter.Continue {
		t.Fatal("a plain HTTP request's response was not passed through")
	}
	if h.Get("content-type") != "text/plain" || len(cb.Encoded) != 0 {
		t.Errorf("headers %v encoded %q", h.Fields, cb.Encoded)
	}
}
