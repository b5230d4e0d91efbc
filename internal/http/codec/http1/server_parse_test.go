package http1

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// fields builds a field list from name, value pairs.
func fields(kv ...string) []hhttp.HeaderField {
	var out []hhttp.HeaderField
	for i := 0; i < len(kv); i += 2 {
		out = append(out, hhttp.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

// serveString runs Serve over an in-memory connection holding in.
func serveString(t *testing.T, in string, opts hhttp.ServerOptions) (*recordingHandler, *memConn, error) {
	t.Helper()
	h := &recordingHandler{}
	c := newMemConn(in)
	err := Serve(c, opts, h)
	if !c.closed {
		t.Errorf("Serve returned without closing the connection")
	}
	return h, c, err
}

func TestServerParseValid(t *testing.T) {
	tests := []struct {
		name         string
		in           string
		opts         hhttp.ServerOptions
		wantHeaders  []hhttp.HeaderField
		wantBody     string
		wantTrailers []hhttp.HeaderField
		wantEnd      bool
		wantProto    string
	}{
		{
			name:        "simple GET",
			in:          "GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nUser-Agent: x\r\n\r\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":authority", "example.com", ":path", "/a?b=c", "user-agent", "x"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name:        "scheme from options, names lowercased, OWS trimmed",
			in:          "GET / HTTP/1.1\r\nHOST:h\r\nX-Mixed-Case: \t v a l \t\r\n\r\n",
			opts:        hhttp.ServerOptions{Scheme: "https"},
			wantHeaders: fields(":method", "GET", ":scheme", "https", ":authority", "h", ":path", "/", "x-mixed-case", "v a l"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name:        "no host leaves :authority out for the connection manager",
			in:          "GET / HTTP/1.1\r\n\r\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":path", "/"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name:        "bare LF line endings accepted in the header section, as Balsa does",
			in:          "GET / HTTP/1.1\nHost: h\nA: b\n\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/", "a", "b"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name:        "leading empty lines ignored (RFC 9112 §2.2)",
			in:          "\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name:        "obs-fold joined with one space, as Balsa accepts continuation lines",
			in:          "GET / HTTP/1.1\r\nHost: h\r\nX-Long: a\r\n  b\r\n\tc\r\nY: d\r\n\r\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/", "x-long", "a b c", "y", "d"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name:        "absolute-form: authority and scheme from the URL, Host ignored",
			in:          "GET http://Example.com:8080/p?q HTTP/1.1\r\nHost: other\r\n\r\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":authority", "Example.com:8080", ":path", "/p?q"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name:        "absolute-form without path gets /",
			in:          "GET HTTP://h HTTP/1.1\r\n\r\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name:        "asterisk-form for OPTIONS",
			in:          "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
			wantHeaders: fields(":method", "OPTIONS", ":scheme", "http", ":authority", "h", ":path", "*"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name:        "CONNECT authority-form has no :path",
			in:          "CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\n\r\n",
			wantHeaders: fields(":method", "CONNECT", ":scheme", "http", ":authority", "h:443"),
			wantProto:   "HTTP/1.1", // the payload is raw bytes until the close
		},
		{
			name:        "CONNECT content-length 0 removed",
			in:          "CONNECT h:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
			wantHeaders: fields(":method", "CONNECT", ":scheme", "http", ":authority", "h:443"),
			wantProto:   "HTTP/1.1", // the payload is raw bytes until the close
		},
		{
			name:        "HTTP/1.0",
			in:          "GET / HTTP/1.0\r\n\r\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":path", "/"),
			wantEnd:     true, wantProto: "HTTP/1.0",
		},
		{
			name:        "content-length body",
			in:          "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world",
			wantHeaders: fields(":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/", "content-length", "11"),
			wantBody:    "hello world", wantProto: "HTTP/1.1",
		},
		{
			name:        "content-length 0 is end of stream",
			in:          "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
			wantHeaders: fields(":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/", "content-length", "0"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name: "chunked body with extensions and trailers",
			in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n" +
				"6;ext=1\r\nHello \r\n5 ; a=\"b\"\r\nWorld\r\n0\r\nX-Trailer: t1\r\nChecksum: abc\r\n\r\n",
			wantHeaders:  fields(":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/", "transfer-encoding", "Chunked"),
			wantBody:     "Hello World",
			wantTrailers: fields("x-trailer", "t1", "checksum", "abc"),
			wantProto:    "HTTP/1.1",
		},
		{
			name: "chunked body without trailers, upper-case hex",
			in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"A\r\n0123456789\r\n0\r\n\r\n",
			wantHeaders: fields(":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/", "transfer-encoding", "chunked"),
			wantBody:    "0123456789",
			wantProto:   "HTTP/1.1",
		},
		{
			name:        "expect 100-continue is answered and removed",
			in:          "POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\nhi",
			wantHeaders: fields(":method", "POST", ":scheme", "http", ":authority", "h", ":path", "/", "content-length", "2"),
			wantBody:    "hi", wantProto: "HTTP/1.1",
		},
		{
			name:        "obs-text in values allowed",
			in:          "GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\r\n\r\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/", "x", "caf\xc3\xa9"),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			// Larger than the initial 4 KiB buffer: the buffer grows.
			name:        "20 KiB header value",
			in:          "GET / HTTP/1.1\r\nHost: h\r\nBig: " + strings.Repeat("b", 20<<10) + "\r\n\r\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/", "big", strings.Repeat("b", 20<<10)),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
		{
			name:        "empty value",
			in:          "GET / HTTP/1.1\r\nHost: h\r\nX:\r\n\r\n",
			wantHeaders: fields(":method", "GET", ":scheme", "http", ":authority", "h", ":path", "/", "x", ""),
			wantEnd:     true, wantProto: "HTTP/1.1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _, err := serveString(t, tc.in, tc.opts)
			if err != nil {
				t.Fatalf("Serve: %v", err)
			}
			if len(h.codecErrs) != 0 {
				t.Fatalf("codec error: %v", h.codecErrs[0])
			}
			if len(h.requests) != 1 {
				t.Fatalf("got %d requests, want 1", len(h.requests))
			}
			r := h.requests[0]
			if diff := cmp.Diff(tc.wantHeaders, r.headers); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
			if r.bodyErr != nil {
				t.Errorf("body error: %v", r.bodyErr)
			}
			if r.body != tc.wantBody {
				t.Errorf("body = %q, want %q", r.body, tc.wantBody)
			}
			if diff := cmp.Diff(tc.wantTrailers, r.trailers); diff != "" {
				t.Errorf("trailers (-want +got):\n%s", diff)
			}
			if r.endStream != tc.wantEnd {
				t.Errorf("RequestEndStream = %v, want %v", r.endStream, tc.wantEnd)
			}
			if r.protocol != tc.wantProto {
				t.Errorf("Protocol = %q, want %q", r.protocol, tc.wantProto)
			}
		})
	}
}

func TestServerParseErrors(t *testing.T) {
	tests := []struct {
		name        string
		in          string
		opts        hhttp.ServerOptions
		wantStatus  int
		wantDetails string
	}{
		// Request line.
		{name: "unknown method", in: "FOO / HTTP/1.1\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "lowercase method", in: "get / HTTP/1.1\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "double space", in: "GET  / HTTP/1.1\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "missing version", in: "GET /\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "bad version", in: "GET / HTTP/1.1x\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "lowercase version", in: "GET / http/1.1\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "control char in target", in: "GET /a\x01b HTTP/1.1\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "bare CR in request line", in: "GET / HTTP/1.1\rX: y\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "asterisk for GET", in: "GET * HTTP/1.1\r\nHost: h\r\n\r\n", wantStatus: 400, wantDetails: DetailsInvalidURL},
		{name: "relative target", in: "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", wantStatus: 400, wantDetails: DetailsInvalidURL},
		{name: "absolute-form without host", in: "GET http:///p HTTP/1.1\r\n\r\n", wantStatus: 400, wantDetails: DetailsInvalidURL},
		{name: "absolute-form ftp", in: "GET ftp://h/p HTTP/1.1\r\n\r\n", wantStatus: 400, wantDetails: DetailsInvalidScheme},
		{name: "https URL on plaintext", in: "GET https://h/p HTTP/1.1\r\n\r\n", wantStatus: 403, wantDetails: DetailsHTTPSInPlaintext},
		{name: "CONNECT with path", in: "CONNECT /x HTTP/1.1\r\n\r\n", wantStatus: 400, wantDetails: DetailsInvalidURL},
		// Header fields.
		{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : h\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "no colon", in: "GET / HTTP/1.1\r\nHost h\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "empty name", in: "GET / HTTP/1.1\r\n: h\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "invalid name char", in: "GET / HTTP/1.1\r\nX(y): h\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "control char in name", in: "GET / HTTP/1.1\r\nX\x01: h\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "NUL in value", in: "GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", wantStatus: 400, wantDetails: DetailsInvalidCharacters},
		{name: "bare CR in value", in: "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", wantStatus: 400, wantDetails: DetailsInvalidCharacters},
		{name: "DEL in value", in: "GET / HTTP/1.1\r\nX: a\x7fb\r\n\r\n", wantStatus: 400, wantDetails: DetailsInvalidCharacters},
		{name: "continuation before any header", in: "GET / HTTP/1.1\r\n a: b\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "two hosts", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", wantStatus: 400, wantDetails: DetailsInvalidAuthority},
		{name: "invalid host", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", wantStatus: 400, wantDetails: DetailsInvalidAuthority},
		// Framing (request smuggling).
		{name: "CL and TE", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			wantStatus: 400, wantDetails: DetailsChunkedContentLength},
		{name: "TE and CL", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
			wantStatus: 400, wantDetails: DetailsChunkedContentLength},
		{name: "two differing CL", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
			wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "two identical CL", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
			wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "CL list", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\nhello", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "negative CL", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "plus CL", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\nhello", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "huge CL", in: "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n", wantStatus: 400, wantDetails: DetailsCodecError},
		{name: "TE gzip", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", wantStatus: 501, wantDetails: DetailsInvalidTransferEncoding},
		{name: "TE gzip, chunked", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", wantStatus: 501, wantDetails: DetailsInvalidTransferEncoding},
		{name: "TE twice", in: "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", wantStatus: 501, wantDetails: DetailsInvalidTransferEncoding},
		{name: "TE chunked on CONNECT", in: "CONNECT h:1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", wantStatus: 501, wantDetails: DetailsInvalidTransferEncoding},
		{name: "CL on CONNECT", in: "CONNECT h:1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", wantStatus: 400, wantDetails: DetailsBodyDisallowed},
		// Limits.
		{name: "headers too large", in: "GET / HTTP/1.1\r\nHost: h\r\nX: " + strings.Repeat("a", 200) + "\r\n\r\n",
			opts: hhttp.ServerOptions{MaxRequestHeadersBytes: 100}, wantStatus: 431, wantDetails: DetailsHeadersTooLarge},
		{name: "request line too large", in: "GET /" + strings.Repeat("a", 200) + " HTTP/1.1\r\n\r\n",
			opts: hhttp.ServerOptions{MaxRequestHeadersBytes: 100}, wantStatus: 431, wantDetails: DetailsHeadersTooLarge},
		{name: "default 60 KiB limit", in: "GET / HTTP/1.1\r\nX: " + strings.Repeat("a", 61*1024) + "\r\n\r\n",
			wantStatus: 431, wantDetails: DetailsHeadersTooLarge},
		{name: "too many headers", in: "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
			opts: hhttp.ServerOptions{MaxRequestHeadersCount: 3}, wantStatus: 431, wantDetails: DetailsTooManyHeaders},
		{name: "default 100 headers", in: "GET / HTTP/1.1\r\n" + strings.Repeat("A: 1\r\n", 101) + "\r\n",
			wantStatus: 431, wantDetails: DetailsTooManyHeaders},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, c, err := serveString(t, tc.in, tc.opts)
			var cerr *hhttp.CodecError
			if !errors.As(err, &cerr) {
				t.Fatalf("Serve error = %v, want a *CodecError", err)
			}
			if len(h.requests) != 0 {
				t.Errorf("request dispatched despite codec error: %v", h.requests[0].headers)
			}
			if len(h.codecErrs) != 1 {
				t.Fatalf("ServeCodecError called %d times, want 1", len(h.codecErrs))
			}
			got := h.codecErrs[0]
			if got.Status != tc.wantStatus || got.Details != tc.wantDetails {
				t.Errorf("codec error = %d %s, want %d %s (%v)", got.Status, got.Details, tc.wantStatus, tc.wantDetails, got.Err)
			}
			out := c.out.String()
			if want := "HTTP/1.1 " + hhttp.StatusText3(tc.wantStatus) + " "; !strings.HasPrefix(out, want) {
				t.Errorf("response = %q, want prefix %q", out, want)
			}
			if !strings.Contains(out, "\r\nconnection: close\r\n") {
				t.Errorf("response %q lacks connection: close", out)
			}
		})
	}
}

// TestServerBodyErrors covers malformed chunked bodies: the handler sees a
// 400 *CodecError from ReadBody, and the connection is not reused.
func TestServerBodyErrors(t *testing.T) {
	const head = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
	const next = "GET /next HTTP/1.1\r\nHost: h\r\n\r\n"
	tests := []struct {
		name string
		body string
	}{
		{name: "chunk size overflow", body: "10000000000000000\r\n"},
		{name: "negative chunk size", body: "-1\r\nx\r\n0\r\n\r\n"},
		{name: "0x prefix", body: "0x5\r\nhello\r\n0\r\n\r\n"},
		{name: "empty chunk size", body: "\r\nhello\r\n0\r\n\r\n"},
		{name: "space before size", body: " 5\r\nhello\r\n0\r\n\r\n"},
		{name: "space after size without extension", body: "5 \r\nhello\r\n0\r\n\r\n"},
		{name: "LF-only chunk-size line", body: "5\nhello\r\n0\r\n\r\n"},
		{name: "LF-only after chunk data", body: "5\r\nhello\n0\r\n\r\n"},
		{name: "chunk data longer than size", body: "3\r\nhello\r\n0\r\n\r\n"},
		{name: "bare CR in extension", body: "5;a\rb\r\nhello\r\n0\r\n\r\n"},
		{name: "bad trailer", body: "5\r\nhello\r\n0\r\nbad trailer\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, _, err := serveString(t, head+tc.body+next, hhttp.ServerOptions{})
			if err != nil {
				t.Logf("Serve: %v", err)
			}
			if len(h.requests) != 1 {
				t.Fatalf("got %d requests, want exactly 1 (the smuggled one must not be served)", len(h.requests))
			}
			var cerr *hhttp.CodecError
			if !errors.As(h.requests[0].bodyErr, &cerr) || cerr.Status != 400 || cerr.Details != DetailsCodecError {
				t.Errorf("body error = %v, want 400 %s", h.requests[0].bodyErr, DetailsCodecError)
			}
		})
	}
}

func TestParseChunkSize(t *testing.T) {
	tests := []struct {
		in     string
		want   int64
		wantOK bool
	}{
		{in: "0", want: 0, wantOK: true},
		{in: "fF", want: 255, wantOK: true},
		{in: "7fffffffffffffff", want: 1<<63 - 1, wantOK: true},
		{in: "8000000000000000", want: 0, wantOK: false},
		{in: "00000000000000000001", want: 1, wantOK: true},
		{in: "1;name=value", want: 1, wantOK: true},
		{in: "1 ;name", want: 1, wantOK: true},
		{in: "1\t", want: 0, wantOK: false},
		{in: "g", want: 0, wantOK: false},
		{in: "", want: 0, wantOK: false},
		{in: "1;\x00", want: 0, wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := parseChunkSize([]byte(tc.in))
			if ok != tc.wantOK || (ok && got != tc.want) {
				t.Errorf("parseChunkSize(%q) = %d, %v, want %d, %v", tc.in, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
