package http2

import (
	"io"
	"net"
	"testing"

	"github.com/google/go-cmp/cmp"
	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// dialRawSettings is dialRaw that also returns the server's SETTINGS.
func dialRawSettings(t *testing.T, addr string) (*rawClient, map[xhttp2.SettingID]uint32) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawClient{t: t, c: c, fr: xhttp2.NewFramer(c, c)}
	rc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rc.enc = hpack.NewEncoder(&rc.hb)
	if _, err := io.WriteString(c, Preface); err != nil {
		t.Fatal(err)
	}
	if err := rc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	settings := map[xhttp2.SettingID]uint32{}
	rc.waitFor("server SETTINGS", func(f xhttp2.Frame) bool {
		sf, ok := f.(*xhttp2.SettingsFrame)
		if !ok || sf.IsAck() {
			return false
		}
		_ = sf.ForeachSetting(func(s xhttp2.Setting) error {
			settings[s.ID] = s.Val
			return nil
		})
		return true
	})
	if err := rc.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	return rc, settings
}

// waitHeaders waits for a HEADERS frame on id and returns its fields.
func (rc *rawClient) waitHeaders(id uint32) (*xhttp2.MetaHeadersFrame, []string) {
	rc.t.Helper()
	f := rc.waitFor("HEADERS", func(f xhttp2.Frame) bool {
		mh, ok := f.(*xhttp2.MetaHeadersFrame)
		return ok && mh.StreamID == id
	}).(*xhttp2.MetaHeadersFrame)
	var got []string
	for _, hf := range f.Fields {
		got = append(got, hf.Name, hf.Value)
	}
	return f, got
}

// tunnelHandler records the request headers it sees, answers the upgrade
// with 101 (the HTTP/1.1 form the connection manager produces), then
// echoes every body chunk back until the client half-closes, and
// half-closes in turn.
func tunnelHandler(seen chan<- []string, status int) streamFunc {
	return func(s hhttp.ServerStream) {
		var got []string
		for _, f := range s.RequestHeaders().Fields {
			got = append(got, f.Name, f.Value)
		}
		seen <- got
		h := &hhttp.Headers{}
		h.SetStatus(status)
		if status == 101 {
			h.Add("upgrade", "websocket")
			h.Add("connection", "upgrade")
			h.Add("content-length", "0")
		}
		h.Add("x-tunnel", "yes")
		if err := s.WriteHeaders(h, false); err != nil {
			return
		}
		buf := make([]byte, 1024)
		for {
			n, err := s.ReadBody(buf)
			if n > 0 {
				if s.WriteData(buf[:n], false) != nil {
					return
				}
			}
			if err == io.EOF {
				_ = s.WriteData(nil, true)
				return
			}
			if err != nil {
				return
			}
		}
	}
}

// TestServerExtendedConnect: with allow_connect the server advertises
// SETTINGS_ENABLE_CONNECT_PROTOCOL, presents an extended CONNECT as the
// HTTP/1.1 upgrade Envoy's codec makes of it, answers the handler's 101 as
// 200 without the upgrade fields, and carries the tunnel as DATA both ways
// with END_STREAM as the half-close.
func TestServerExtendedConnect(t *testing.T) {
	seen := make(chan []string, 1)
	opts := hhttp.ServerOptions{HTTP2: &hhttp.HTTP2Options{AllowConnect: true}}
	ts := startServer(t, opts, tunnelHandler(seen, 101), nil)
	rc, settings := dialRawSettings(t, ts.addr)
	if v, ok := settings[xhttp2.SettingEnableConnectProtocol]; !ok || v != 1 {
		t.Fatalf("SETTINGS_ENABLE_CONNECT_PROTOCOL = %d (sent %v), want 1", v, ok)
	}

	rc.headers(1, false, ":method", "CONNECT", ":protocol", "websocket", ":scheme", "http",
		":path", "/chat", ":authority", "example.com", "sec-websocket-version", "13")
	wantReq := []string{":method", "GET", ":scheme", "http", ":path", "/chat", ":authority", "example.com",
		"sec-websocket-version", "13", "upgrade", "websocket", "connection", "upgrade"}
	if diff := cmp.Diff(wantReq, <-seen); diff != "" {
		t.Errorf("request headers seen by the handler (-want +got):\n%s", diff)
	}
	hf, got := rc.waitHeaders(1)
	if want := []string{":status", "200", "x-tunnel", "yes"}; !cmp.Equal(got, want) {
		t.Errorf("response headers = %q, want %q", got, want)
	}
	if hf.StreamEnded() {
		t.Fatal("response ended the tunnel")
	}

	if err := rc.fr.WriteData(1, false, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	d := rc.waitFor("echoed DATA", func(f xhttp2.Frame) bool {
		df, ok := f.(*xhttp2.DataFrame)
		return ok && len(df.Data()) > 0
	}).(*xhttp2.DataFrame)
	if string(d.Data()) != "ping" {
		t.Errorf("echoed %q, want ping", d.Data())
	}
	// The client's END_STREAM half-closes the tunnel; the handler's
	// half-close follows.
	if err := rc.fr.WriteData(1, true, nil); err != nil {
		t.Fatal(err)
	}
	rc.waitFor("END_STREAM", func(f xhttp2.Frame) bool {
		df, ok := f.(*xhttp2.DataFrame)
		return ok && df.StreamEnded()
	})
}

// TestServerConnectRequests covers CONNECT shapes: what reaches the handler
// and which ones are protocol errors.
func TestServerConnectRequests(t *testing.T) {
	tests := []struct {
		name         string
		allowConnect bool
		fields       []string
		wantSeen     []string // headers the handler sees; nil means GOAWAY(PROTOCOL_ERROR)
	}{
		{
			// Plain CONNECT (RFC 9113 §8.5): :authority only, handed on
			// as is (the tunnel for CONNECT routes and tcp_proxy).
			name:     "plain_connect",
			fields:   []string{":method", "CONNECT", ":authority", "example.com:443"},
			wantSeen: []string{":method", "CONNECT", ":authority", "example.com:443"},
		},
		{
			name:         "plain_connect_with_allow_connect",
			allowConnect: true,
			fields:       []string{":method", "CONNECT", ":authority", "example.com:443"},
			wantSeen:     []string{":method", "CONNECT", ":authority", "example.com:443"},
		},
		{
			// Without :protocol, :path makes a CONNECT malformed.
			name:   "plain_connect_with_path",
			fields: []string{":method", "CONNECT", ":authority", "example.com:443", ":path", "/"},
		},
		{
			// :protocol is an unknown pseudo-header unless advertised
			// (allow_connect defaults to false, as Envoy's).
			name:   "protocol_without_allow_connect",
			fields: []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":path", "/", ":authority", "a"},
		},
		{
			// RFC 8441 §4: extended CONNECT needs :scheme and :path.
			name:         "extended_connect_without_path",
			allowConnect: true,
			fields:       []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "http", ":authority", "a"},
		},
		{
			name:         "protocol_on_get",
			allowConnect: true,
			fields:       []string{":method", "GET", ":protocol", "websocket", ":scheme", "http", ":path", "/", ":authority", "a"},
		},
		{
			name:         "duplicate_protocol",
			allowConnect: true,
			fields:       []string{":method", "CONNECT", ":protocol", "a", ":protocol", "b", ":scheme", "http", ":path", "/", ":authority", "a"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan []string, 1)
			opts := hhttp.ServerOptions{HTTP2: &hhttp.HTTP2Options{AllowConnect: tc.allowConnect}}
			ts := startServer(t, opts, tunnelHandler(seen, 200), nil)
			rc, settings := dialRawSettings(t, ts.addr)
			if _, ok := settings[xhttp2.SettingEnableConnectProtocol]; ok != tc.allowConnect {
				t.Errorf("SETTINGS_ENABLE_CONNECT_PROTOCOL sent = %v, want %v", ok, tc.allowConnect)
			}
			rc.headers(1, false, tc.fields...)
			if tc.wantSeen == nil {
				if ga := rc.waitGoAway(); ga.ErrCode != xhttp2.ErrCodeProtocol {
					t.Errorf("GOAWAY code = %v, want PROTOCOL_ERROR", ga.ErrCode)
				}
				return
			}
			if diff := cmp.Diff(tc.wantSeen, <-seen); diff != "" {
				t.Errorf("request headers (-want +got):\n%s", diff)
			}
			if _, got := rc.waitHeaders(1); !cmp.Equal(got, []string{":status", "200", "x-tunnel", "yes"}) {
				t.Errorf("response headers = %q", got)
			}
			if err := rc.fr.WriteData(1, true, []byte("bytes")); err != nil {
				t.Fatal(err)
			}
			d := rc.waitFor("DATA", func(f xhttp2.Frame) bool {
				df, ok := f.(*xhttp2.DataFrame)
				return ok && len(df.Data()) > 0
			}).(*xhttp2.DataFrame)
			if string(d.Data()) != "bytes" {
				t.Errorf("tunnel echoed %q, want bytes", d.Data())
			}
		})
	}
}

// TestServerUpgradeResponseWithoutUpgradeRequest: a 101 on an ordinary
// stream cannot be sent (RFC 9113 §8.6).
func TestServerUpgradeResponseWithoutUpgradeRequest(t *testing.T) {
	errc := make(chan error, 1)
	ts := startServer(t, hhttp.ServerOptions{}, streamFunc(func(s hhttp.ServerStream) {
		h := &hhttp.Headers{}
		h.SetStatus(101)
		errc <- s.WriteHeaders(h, true)
	}), nil)
	rc := dialRaw(t, ts.addr)
	rc.headers(1, true, getReq...)
	if err := <-errc; err == nil {
		t.Error("WriteHeaders(101) succeeded on a plain GET")
	}
}

// TestServerStreamErrorOnInvalidMessage:
// override_stream_error_on_invalid_http_message resets only the stream of
// a malformed request; the connection keeps serving.
func TestServerStreamErrorOnInvalidMessage(t *testing.T) {
	tests := []struct {
		name string
		send func(rc *rawClient)
	}{
		{
			name: "uppercase_header_name",
			send: func(rc *rawClient) { rc.headers(1, true, req("GET", "X-Upper", "v")...) },
		},
		{
			name: "missing_path",
			send: func(rc *rawClient) {
				rc.headers(1, true, ":method", "GET", ":scheme", "http", ":authority", "a")
			},
		},
		{
			name: "content_length_mismatch",
			send: func(rc *rawClient) {
				rc.headers(1, false, req("POST", "content-length", "10")...)
				_ = rc.fr.WriteData(1, true, []byte("short"))
			},
		},
		{
			name: "trailers_without_end_stream",
			send: func(rc *rawClient) {
				rc.headers(1, false, req("POST")...)
				rc.headers(1, false, "x-trailer", "v")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := hhttp.ServerOptions{HTTP2: &hhttp.HTTP2Options{StreamErrorOnInvalidHTTPMessage: true}}
			ts := startServer(t, opts, streamFunc(func(s hhttp.ServerStream) {
				_, _ = io.Copy(io.Discard, bodyReader{s})
				h := &hhttp.Headers{}
				h.SetStatus(200)
				_ = s.WriteHeaders(h, true)
			}), nil)
			rc := dialRaw(t, ts.addr)
			tc.send(rc)
			rst := rc.waitFor("RST_STREAM", func(f xhttp2.Frame) bool {
				if _, ok := f.(*xhttp2.GoAwayFrame); ok {
					t.Fatal("GOAWAY: the connection was closed")
				}
				r, ok := f.(*xhttp2.RSTStreamFrame)
				return ok && r.StreamID == 1
			}).(*xhttp2.RSTStreamFrame)
			if rst.ErrCode != xhttp2.ErrCodeProtocol {
				t.Errorf("RST_STREAM code = %v, want PROTOCOL_ERROR", rst.ErrCode)
			}
			rc.headers(3, true, getReq...)
			if _, got := rc.waitHeaders(3); len(got) < 2 || got[1] != "200" {
				t.Errorf("next request answered %q, want 200", got)
			}
		})
	}
}
