package http2

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	xhttp2 "golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// fuzzSeeds are valid and near-valid frame sequences to start from.
func fuzzSeeds() [][]byte {
	var seeds [][]byte
	build := func(fn func(fr *xhttp2.Framer, enc *hpack.Encoder, hb *bytes.Buffer)) {
		var out, hb bytes.Buffer
		fr := xhttp2.NewFramer(&out, nil)
		fr.AllowIllegalWrites = true
		fn(fr, hpack.NewEncoder(&hb), &hb)
		seeds = append(seeds, out.Bytes())
	}
	block := func(enc *hpack.Encoder, hb *bytes.Buffer, fields ...string) []byte {
		hb.Reset()
		for i := 0; i+1 < len(fields); i += 2 {
			_ = enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
		}
		return append([]byte(nil), hb.Bytes()...)
	}
	build(func(fr *xhttp2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 1, BlockFragment: block(enc, hb, getReq...), EndStream: true, EndHeaders: true})
	})
	build(func(fr *xhttp2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		b := block(enc, hb, req("POST", "content-length", "3", "cookie", "a", "cookie", "b")...)
		_ = fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 1, BlockFragment: b[:4], EndHeaders: false})
		_ = fr.WriteContinuation(1, true, b[4:])
		_ = fr.WriteData(1, false, []byte("abc"))
		_ = fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 1, BlockFragment: block(enc, hb, "x-t", "1"), EndStream: true, EndHeaders: true})
		_ = fr.WriteWindowUpdate(0, 100)
		_ = fr.WritePing(false, [8]byte{1})
		_ = fr.WriteRSTStream(1, xhttp2.ErrCodeCancel)
	})
	build(func(fr *xhttp2.Framer, enc *hpack.Encoder, hb *bytes.Buffer) {
		_ = fr.WriteSettings(xhttp2.Setting{ID: xhttp2.SettingInitialWindowSize, Val: 1})
		_ = fr.WriteHeaders(xhttp2.HeadersFrameParam{StreamID: 3, BlockFragment: block(enc, hb, getReq...), EndStream: true, EndHeaders: true, Priority: xhttp2.PriorityParam{StreamDep: 3}})
		_ = fr.WritePriority(5, xhttp2.PriorityParam{StreamDep: 1})
		_ = fr.WriteGoAway(0, xhttp2.ErrCodeNo, nil)
	})
	return seeds
}

// FuzzServerConn feeds arbitrary bytes after a valid preface and SETTINGS:
// the server must neither panic nor hang, and ServeConn must return once the
// client goes away.
func FuzzServerConn(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	srv, err := NewServer(hhttp.ServerOptions{})
	if err != nil {
		f.Fatal(err)
	}
	var prefix bytes.Buffer
	prefix.WriteString(Preface)
	_ = xhttp2.NewFramer(&prefix, nil).WriteSettings()
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			srv.ServeConn(server, streamFunc(h2specHandler), nil)
		}()
		go func() { _, _ = io.Copy(io.Discard, client) }()
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = client.Write(prefix.Bytes())
		_, _ = client.Write(data)
		client.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("ServeConn did not return after the client closed")
		}
	})
}
