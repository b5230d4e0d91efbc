package connmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/stats"
)

// fakeStream is a downstream request with a body in chunks and optional
// trailers; it records the response.
type fakeStream struct {
	headers  *hhttp.Headers
	chunks   [][]byte
	trailers *hhttp.Headers
	reads    int // ReadBody calls that returned data or EOF
	eofs     int

	status   string
	details  string
	body     bytes.Buffer
	respTrls *hhttp.Headers
	ended    bool
}

func (s *fakeStream) RequestHeaders() *hhttp.Headers { return s.headers }
func (s *fakeStream) RequestEndStream() bool         { return len(s.chunks) == 0 && s.trailers == nil }
func (s *fakeStream) ReadBody(p []byte) (int, error) {
	if len(s.chunks) == 0 {
		s.eofs++
		return 0, io.EOF
	}
	s.reads++
	n := copy(p, s.chunks[0])
	s.chunks = s.chunks[1:]
	return n, nil
}
func (s *fakeStream) RequestTrailers() *hhttp.Headers { return s.trailers }
func (s *fakeStream) WriteHeaders(h *hhttp.Headers, end bool) error {
	s.status = h.Get(hhttp.Status)
	s.ended = end
	return nil
}
func (s *fakeStream) WriteData(p []byte, end bool) error {
	s.body.Write(p)
	s.ended = end
	return nil
}
func (s *fakeStream) WriteTrailers(t *hhttp.Headers) error {
	s.respTrls = t
	s.ended = true
	return nil
}
func (s *fakeStream) Protocol() string         { return "HTTP/2" }
func (s *fakeStream) Context() context.Context { return context.Background() }

// testFilter logs its events to log and acts as its fields say.
type testFilter struct {
	name string
	log  *[]string
	cb   httpfilter.Callbacks

	// buffer: call BufferRequestBody(max) from DecodeHeaders; a too large
	// body is answered 413 as the buffer filter does.
	buffer bool
	max    int
	// replace: the buffered body is replaced by this.
	replace []byte
	// denyAfterBuffer: answer 403 once the body is buffered.
	denyAfterBuffer bool
	// upper: decode data is upper-cased and injected (Stop for the
	// original); encode data likewise through EncodeData.
	upper bool
	// terminal: stop on headers; answer 200 echoing the body once the
	// request ends, with response trailers when respTrailers.
	terminal     bool
	respTrailers bool
	got          []byte
}

func (f *testFilter) logf(format string, args ...any) {
	*f.log = append(*f.log, f.name+":"+fmt.Sprintf(format, args...))
}

func (f *testFilter) DecodeHeaders(h *hhttp.Headers, end bool) httpfilter.Status {
	f.logf("headers end=%v", end)
	if f.buffer {
		body, t, err := f.cb.BufferRequestBody(f.max)
		switch {
		case errors.Is(err, httpfilter.ErrBodyTooLarge):
			f.logf("too large after %d", len(body))
			f.cb.SendLocalReply(413, httpfilter.BodyTooLarge, httpfilter.DetailsBodyTooLarge, nil)
			return httpfilter.Stop
		case err != nil:
			f.logf("error %v", err)
			return httpfilter.Stop
		}
		f.logf("buffered %q trailers=%v", body, t != nil)
		if f.denyAfterBuffer {
			f.cb.SendLocalReply(403, "denied", "test_denied", nil)
			return httpfilter.Stop
		}
		if f.replace != nil {
			f.cb.SetBufferedRequestBody(f.replace)
		}
	}
	if f.terminal {
		if end {
			f.respond()
		}
		return httpfilter.Stop
	}
	return httpfilter.Continue
}

func (f *testFilter) DecodeData(data []byte, end bool) httpfilter.Status {
	f.logf("data %q end=%v", data, end)
	if f.upper {
		f.cb.InjectDecodedData(bytes.ToUpper(data), end)
		return httpfilter.Stop
	}
	if f.terminal {
		f.got = append(f.got, data...)
		if end {
			f.respond()
		}
		return httpfilter.Stop
	}
	return httpfilter.Continue
}

func (f *testFilter) DecodeTrailers(t *hhttp.Headers) httpfilter.Status {
	f.logf("trailers %s", t.Get("x-t"))
	if f.terminal {
		f.respond()
		return httpfilter.Stop
	}
	return httpfilter.Continue
}

func (f *testFilter) respond() {
	h := &hhttp.Headers{}
	h.Add(hhttp.Status, "200")
	f.cb.EncodeHeaders(h, false)
	if !f.respTrailers {
		f.cb.EncodeData(append([]byte("echo:"), f.got...), true)
		return
	}
	f.cb.EncodeData(append([]byte("echo:"), f.got...), false)
	t := &hhttp.Headers{}
	t.Add("x-rt", "1")
	f.cb.EncodeTrailers(t)
}

func (f *testFilter) EncodeHeaders(h *hhttp.Headers, end bool) httpfilter.Status {
	return httpfilter.Continue
}

func (f *testFilter) EncodeData(data []byte, end bool) httpfilter.Status {
	if f.upper {
		f.cb.EncodeData(bytes.ToUpper(data), end)
		return httpfilter.Stop
	}
	return httpfilter.Continue
}

func (f *testFilter) EncodeTrailers(t *hhttp.Headers) httpfilter.Status {
	if f.upper {
		// A transforming encoder flushes what it holds before trailers.
		f.cb.EncodeData([]byte("!"), false)
	}
	return httpfilter.Continue
}

// serveTest runs one request through filters built from protos (copied per
// stream) and returns the event log, the response and the stats store.
func serveTest(t *testing.T, protos []testFilter, s *fakeStream) ([]string, *stats.Store) {
	t.Helper()
	store := stats.NewStore()
	var log []string
	cfg := &Config{StatPrefix: "test", Stats: NewStats(store, "test"), Store: store}
	for i := range protos {
		p := protos[i]
		cfg.Filters = append(cfg.Filters, FilterFactory{Name: p.name, Factory: func(cb httpfilter.Callbacks) httpfilter.Filter {
			f := p
			f.log, f.cb = &log, cb
			return &f
		}})
	}
	c := &conn{cfg: cfg, nc: &network.Conn{}, http2: true}
	c.ServeStream(s)
	return log, store
}

func request(chunks []string, trailer string) *fakeStream {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "POST")
	h.Add(hhttp.Path, "/")
	h.Add(hhttp.Authority, "example.com")
	s := &fakeStream{headers: h}
	for _, c := range chunks {
		s.chunks = append(s.chunks, []byte(c))
	}
	if trailer != "" {
		s.trailers = &hhttp.Headers{}
		s.trailers.Add("x-t", trailer)
	}
	return s
}

func TestBufferRequestBody(t *testing.T) {
	tests := []struct {
		name        string
		filters     []testFilter
		chunks      []string
		trailer     string
		wantLog     []string
		wantStatus  string
		wantBody    string
		wantTooLrge uint64
	}{
		{
			name:    "no buffering streams chunks",
			filters: []testFilter{{name: "a"}, {name: "t", terminal: true}},
			chunks:  []string{"ab", "cd"},
			wantLog: []string{
				"a:headers end=false", "t:headers end=false",
				`a:data "ab" end=false`, `t:data "ab" end=false`,
				`a:data "cd" end=false`, `t:data "cd" end=false`,
				`a:data "" end=true`, `t:data "" end=true`,
			},
			wantStatus: "200", wantBody: "echo:abcd",
		},
		{
			// Filters before the buffering one see every chunk; those
			// after see headers, then the whole body once.
			name:    "buffered body reaches later filters once",
			filters: []testFilter{{name: "a"}, {name: "b", buffer: true, max: 100}, {name: "c"}, {name: "t", terminal: true}},
			chunks:  []string{"ab", "cd"},
			wantLog: []string{
				"a:headers end=false", "b:headers end=false",
				`a:data "ab" end=false`, `a:data "cd" end=false`, `a:data "" end=true`,
				`b:buffered "abcd" trailers=false`,
				"c:headers end=false", "t:headers end=false",
				`c:data "abcd" end=true`, `t:data "abcd" end=true`,
			},
			wantStatus: "200", wantBody: "echo:abcd",
		},
		{
			name:    "trailers follow the buffered body",
			filters: []testFilter{{name: "b", buffer: true, max: 100}, {name: "c"}, {name: "t", terminal: true}},
			chunks:  []string{"ab"},
			trailer: "tv",
			wantLog: []string{
				"b:headers end=false",
				`b:buffered "ab" trailers=true`,
				"c:headers end=false", "t:headers end=false",
				`c:data "ab" end=false`, `t:data "ab" end=false`,
				"c:trailers tv", "t:trailers tv",
			},
			wantStatus: "200", wantBody: "echo:ab",
		},
		{
			name:    "over max answers 413",
			filters: []testFilter{{name: "b", buffer: true, max: 3}, {name: "t", terminal: true}},
			chunks:  []string{"ab", "cd", "ef"},
			wantLog: []string{
				"b:headers end=false",
				"b:too large after 4",
			},
			wantStatus: "413", wantBody: "Payload Too Large", wantTooLrge: 1,
		},
		{
			// A transforming filter before the buffering one: the buffer
			// holds the transformed bytes.
			name:    "injected data is buffered",
			filters: []testFilter{{name: "u", upper: true}, {name: "b", buffer: true, max: 100}, {name: "t", terminal: true}},
			chunks:  []string{"ab", "cd"},
			wantLog: []string{
				"u:headers end=false", "b:headers end=false",
				`u:data "ab" end=false`, `u:data "cd" end=false`, `u:data "" end=true`,
				`b:buffered "ABCD" trailers=false`,
				"t:headers end=false",
				`t:data "ABCD" end=true`,
			},
			// u also upper-cases the response.
			wantStatus: "200", wantBody: "ECHO:ABCD",
		},
		{
			name:    "injected data streams to later filters",
			filters: []testFilter{{name: "u", upper: true}, {name: "t", terminal: true, respTrailers: true}},
			chunks:  []string{"ab"},
			trailer: "tv",
			wantLog: []string{
				"u:headers end=false", "t:headers end=false",
				`u:data "ab" end=false`, `t:data "AB" end=false`,
				"u:trailers tv", "t:trailers tv",
			},
			// The encoder flushes "!" before the response trailers.
			wantStatus: "200", wantBody: "ECHO:AB!",
		},
		{
			name:    "replaced body",
			filters: []testFilter{{name: "b", buffer: true, max: 100, replace: []byte("xyz")}, {name: "t", terminal: true}},
			chunks:  []string{"ab"},
			wantLog: []string{
				"b:headers end=false",
				`b:buffered "ab" trailers=false`,
				"t:headers end=false",
				`t:data "xyz" end=true`,
			},
			wantStatus: "200", wantBody: "echo:xyz",
		},
		{
			// A second buffering filter gets the first one's body after
			// the filters between them saw it.
			name:    "nested buffering",
			filters: []testFilter{{name: "b1", buffer: true, max: 100}, {name: "m"}, {name: "b2", buffer: true, max: 100}, {name: "t", terminal: true}},
			chunks:  []string{"ab", "cd"},
			wantLog: []string{
				"b1:headers end=false",
				`b1:buffered "abcd" trailers=false`,
				"m:headers end=false", "b2:headers end=false",
				`m:data "abcd" end=true`,
				`b2:buffered "abcd" trailers=false`,
				"t:headers end=false",
				`t:data "abcd" end=true`,
			},
			wantStatus: "200", wantBody: "echo:abcd",
		},
		{
			name:    "headers-only request buffers nothing",
			filters: []testFilter{{name: "b", buffer: true, max: 100}, {name: "t", terminal: true}},
			wantLog: []string{
				"b:headers end=true",
				`b:buffered "" trailers=false`,
				"t:headers end=true",
			},
			wantStatus: "200", wantBody: "echo:",
		},
		{
			name:    "buffering filter that stops drops the body",
			filters: []testFilter{{name: "b", buffer: true, max: 100, denyAfterBuffer: true}, {name: "t", terminal: true}},
			chunks:  []string{"ab"},
			wantLog: []string{
				"b:headers end=false",
				`b:buffered "ab" trailers=false`,
			},
			wantStatus: "403", wantBody: "denied",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := request(tc.chunks, tc.trailer)
			log, store := serveTest(t, tc.filters, s)
			if d := cmp.Diff(tc.wantLog, log); d != "" {
				t.Errorf("event log (-want +got):\n%s", d)
			}
			if s.status != tc.wantStatus || s.body.String() != tc.wantBody {
				t.Errorf("response %s %q, want %s %q", s.status, s.body.String(), tc.wantStatus, tc.wantBody)
			}
			if got := store.Counter("http.test.downstream_rq_too_large").Value(); got != tc.wantTooLrge {
				t.Errorf("downstream_rq_too_large = %d, want %d", got, tc.wantTooLrge)
			}
			if s.eofs > 1 {
				t.Errorf("body read to EOF %d times, want at most once", s.eofs)
			}
		})
	}
}

// TestBufferRequestBodyPartial: a filter that accepts a partial body
// (ext_authz allow_partial_message) continues after ErrBodyTooLarge; the
// filters after it get what was buffered, then the rest as it is read.
func TestBufferRequestBodyPartial(t *testing.T) {
	var log []string
	store := stats.NewStore()
	cfg := &Config{StatPrefix: "test", Stats: NewStats(store, "test"), Store: store}
	term := &testFilter{name: "t", terminal: true, log: &log}
	cfg.Filters = []FilterFactory{
		{Name: "p", Factory: func(cb httpfilter.Callbacks) httpfilter.Filter {
			return &partialFilter{cb: cb, log: &log}
		}},
		{Name: "t", Factory: func(cb httpfilter.Callbacks) httpfilter.Filter { term.cb = cb; return term }},
	}
	s := request([]string{"ab", "cd", "ef"}, "")
	c := &conn{cfg: cfg, nc: &network.Conn{}, http2: true}
	c.ServeStream(s)
	want := []string{
		`p:partial "abcd"`,
		"t:headers end=false",
		`t:data "abcd" end=false`,
		`p:data "ef"`, `t:data "ef" end=false`,
		`p:data ""`, `t:data "" end=true`,
	}
	if d := cmp.Diff(want, log); d != "" {
		t.Errorf("event log (-want +got):\n%s", d)
	}
	if got := s.body.String(); got != "echo:abcdef" {
		t.Errorf("body %q, want %q", got, "echo:abcdef")
	}
	if got := store.Counter("http.test.downstream_rq_too_large").Value(); got != 0 {
		t.Errorf("downstream_rq_too_large = %d without a 413, want 0", got)
	}
}

type partialFilter struct {
	cb  httpfilter.Callbacks
	log *[]string
}

func (f *partialFilter) DecodeHeaders(h *hhttp.Headers, end bool) httpfilter.Status {
	body, _, err := f.cb.BufferRequestBody(3)
	if !errors.Is(err, httpfilter.ErrBodyTooLarge) {
		*f.log = append(*f.log, fmt.Sprintf("p:unexpected %v", err))
	}
	*f.log = append(*f.log, fmt.Sprintf("p:partial %q", body))
	return httpfilter.Continue
}

func (f *partialFilter) DecodeData(data []byte, end bool) httpfilter.Status {
	*f.log = append(*f.log, fmt.Sprintf("p:data %q", data))
	return httpfilter.Continue
}

func (f *partialFilter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// TestBufferRequestBodyOutsideHeaders: the call is refused outside
// DecodeHeaders and InjectDecodedData from DecodeHeaders does nothing.
func TestBufferRequestBodyOutsideHeaders(t *testing.T) {
	var log []string
	store := stats.NewStore()
	cfg := &Config{StatPrefix: "test", Stats: NewStats(store, "test"), Store: store}
	term := &testFilter{name: "t", terminal: true, log: &log}
	cfg.Filters = []FilterFactory{
		{Name: "o", Factory: func(cb httpfilter.Callbacks) httpfilter.Filter { return &outsideFilter{cb: cb, log: &log} }},
		{Name: "t", Factory: func(cb httpfilter.Callbacks) httpfilter.Filter { term.cb = cb; return term }},
	}
	s := request([]string{"ab"}, "")
	c := &conn{cfg: cfg, nc: &network.Conn{}, http2: true}
	c.ServeStream(s)
	want := []string{
		"t:headers end=false",
		"o:data error connmgr: BufferRequestBody called outside DecodeHeaders",
		`t:data "ab" end=false`,
		`t:data "" end=true`,
	}
	if d := cmp.Diff(want, log); d != "" {
		t.Errorf("event log (-want +got):\n%s", d)
	}
}

type outsideFilter struct {
	cb  httpfilter.Callbacks
	log *[]string
}

func (f *outsideFilter) DecodeHeaders(*hhttp.Headers, bool) httpfilter.Status {
	f.cb.InjectDecodedData([]byte("never"), false)
	return httpfilter.Continue
}

func (f *outsideFilter) DecodeData(data []byte, end bool) httpfilter.Status {
	if len(data) > 0 {
		_, _, err := f.cb.BufferRequestBody(10)
		*f.log = append(*f.log, "o:data error "+strings.TrimSpace(fmt.Sprint(err)))
	}
	return httpfilter.Continue
}

func (f *outsideFilter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// TestStreamValue: filters of one stream share values; the next stream
// (a pooled stream object) starts without them.
func TestStreamValue(t *testing.T) {
	store := stats.NewStore()
	cfg := &Config{StatPrefix: "test", Stats: NewStats(store, "test"), Store: store}
	type key struct{}
	var got []any
	creates := 0
	mk := func(cb httpfilter.Callbacks) httpfilter.Filter {
		v := cb.(httpfilter.StreamState).StreamValue(key{}, func() any { creates++; return new(int) })
		got = append(got, v)
		return &testFilter{name: "t", terminal: true, log: new([]string), cb: cb}
	}
	cfg.Filters = []FilterFactory{{Name: "a", Factory: mk}, {Name: "b", Factory: mk}}
	c := &conn{cfg: cfg, nc: &network.Conn{}, http2: true}
	c.ServeStream(request(nil, ""))
	c.ServeStream(request(nil, ""))
	if creates != 2 || len(got) != 4 || got[0] != got[1] || got[2] != got[3] || got[0] == got[2] {
		t.Fatalf("creates=%d values=%v: want one value per stream, shared by its filters", creates, got)
	}
}
