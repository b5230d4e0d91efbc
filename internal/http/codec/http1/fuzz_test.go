package http1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	nethttp "net/http"
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// checkFields fails when a decoded field could not have come from a valid
// message: names must be lowercase tokens (or known pseudo-headers), values
// free of CR, LF and NUL.
func checkFields(t *testing.T, fields []hhttp.HeaderField) {
	t.Helper()
	for _, f := range fields {
		name := f.Name
		if len(name) > 0 && name[0] == ':' {
			name = name[1:]
		}
		if name == "" {
			t.Fatalf("empty header name in %q", fields)
		}
		for i := 0; i < len(name); i++ {
			if !tokenChars[name[i]] || (name[i] >= 'A' && name[i] <= 'Z') {
				t.Fatalf("bad header name %q", f.Name)
			}
		}
		for i := 0; i < len(f.Value); i++ {
			if unsafeOut[f.Value[i]] {
				t.Fatalf("bad header value %q", f.Value)
			}
		}
	}
}

func FuzzServerParse(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nT: v\r\n\r\n",
		"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET http://h/p HTTP/1.0\r\nConnection: keep-alive\r\nX: a\r\n b\r\n\r\n",
		"HEAD / HTTP/1.1\nHost: h\n\n",
		"CONNECT h:1 HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nx",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var methods []string
		h := &recordingHandler{}
		h.respond = func(s hhttp.ServerStream) {
			req := s.RequestHeaders()
			checkFields(t, req.Fields)
			if req.Method() == "" {
				t.Fatalf("dispatched without :method: %q", req.Fields)
			}
			methods = append(methods, req.Method())
			_ = s.WriteHeaders(respHeaders(200), false)
			_ = s.WriteData([]byte("ok"), true)
		}
		c := &memConn{in: bytes.NewReader(in)}
		err := Serve(c, hhttp.ServerOptions{MaxRequestHeadersBytes: 4096, MaxRequestHeadersCount: 20}, h)
		var cerr *hhttp.CodecError
		if errors.As(err, &cerr) {
			if cerr.Status < 400 || cerr.Details == "" {
				t.Fatalf("codec error without status or details: %v", cerr)
			}
		}
		for _, r := range h.requests {
			if r.trailers != nil {
				checkFields(t, r.trailers)
			}
		}
		// Every response we wrote must parse with Go's client, in order.
		br := bufio.NewReader(bytes.NewReader(c.out.Bytes()))
		want := len(methods) + len(h.codecErrs)
		for i := 0; i < want; i++ {
			method := "GET"
			if i < len(methods) {
				method = methods[i]
			}
			for {
				resp, err := nethttp.ReadResponse(br, &nethttp.Request{Method: method})
				if err != nil {
					t.Fatalf("response %d of %d unparsable: %v\noutput: %q", i, want, err, c.out.String())
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 100 {
					break
				}
			}
		}
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Fatalf("trailing output after %d responses: %q", want, rest)
		}
	})
}

func FuzzClientParse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\nX: y\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 304 Not Modified\nETag: x\n\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, in []byte, head bool) {
		c := &memConn{in: bytes.NewReader(in)}
		cc := NewClientConn(c)
		cc.MaxResponseHeadersBytes = 4096
		method := "GET"
		if head {
			method = "HEAD"
		}
		if err := cc.WriteHeaders(reqHeaders(method, "/", "h"), true); err != nil {
			t.Fatal(err)
		}
		var h hhttp.Headers
		end, err := cc.ReadHeaders(&h)
		if err != nil {
			if cc.Reusable() {
				t.Fatal("reusable after a failed response")
			}
			return
		}
		checkFields(t, h.Fields)
		code := h.StatusCode()
		if code < 101 || code > 599 || (code < 200 && code != 101) {
			t.Fatalf("bad :status %q", h.Get(hhttp.Status))
		}
		buf := make([]byte, 7)
		total := 0
		for {
			n, err := cc.ReadBody(buf)
			total += n
			if err == io.EOF {
				break
			}
			if err != nil {
				if cc.Reusable() {
					t.Fatal("reusable after a body error")
				}
				return
			}
			if n == 0 {
				t.Fatal("ReadBody returned 0, nil")
			}
		}
		if end && total != 0 {
			t.Fatalf("endStream response had %d body bytes", total)
		}
		if tr := cc.Trailers(); tr != nil {
			checkFields(t, tr.Fields)
		}
		if cc.Reusable() && cc.rd.buffered() != 0 {
			t.Fatal("reusable with unread bytes")
		}
	})
}
