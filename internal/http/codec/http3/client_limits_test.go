package http3

import (
	"context"
	"errors"
	"fmt"
	"io"
	nethttp "net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/testutil"
)

// TestClientResponseLimits: response header and trailer sections over
// Envoy's limits (max_headers_count 100, the header bytes limit) fail the
// exchange instead of reaching the router.
func TestClientResponseLimits(t *testing.T) {
	u := startUpstream(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		var n, size, trailers int
		fmt.Sscan(r.URL.Query().Get("n"), &n)
		fmt.Sscan(r.URL.Query().Get("size"), &size)
		fmt.Sscan(r.URL.Query().Get("trailers"), &trailers)
		for i := 0; i < n; i++ {
			w.Header().Set(fmt.Sprintf("x-h%d", i), "v")
		}
		if size > 0 {
			w.Header().Set("x-big", strings.Repeat("a", size))
		}
		for i := 0; i < trailers; i++ {
			w.Header().Set(fmt.Sprintf("%sx-t%d", nethttp.TrailerPrefix, i), "v")
		}
		w.WriteHeader(200)
		_, _ = io.WriteString(w, "body")
		if f, ok := w.(nethttp.Flusher); ok {
			f.Flush()
		}
	}))
	tests := []struct {
		name        string
		query       string
		wantHeaders error // from ReadHeaders
		wantBody    error // from ReadBody at the end; io.EOF when fine
		anyErr      bool  // wantHeaders: any error (quic-go's own)
	}{
		{name: "a few headers and trailers", query: "n=20&trailers=5", wantBody: io.EOF},
		{name: "too many headers", query: "n=150", wantHeaders: errTooManyHeaders},
		{name: "too many trailers", query: "trailers=150", wantBody: errTooManyHeaders},
		{name: "header section over 60 KiB", query: "size=70000", anyErr: true},
	}
	c := newTestClient(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := c.NewStream(context.Background(), u.addr, u.dial)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close(nil)
			if err := s.WriteHeaders(headers(":method", "GET", ":scheme", "https", ":authority", "b", ":path", "/?"+tt.query), true); err != nil {
				t.Fatal(err)
			}
			var rh hhttp.Headers
			_, err = s.ReadHeaders(&rh)
			switch {
			case tt.anyErr:
				if err == nil {
					t.Fatalf("ReadHeaders = %d fields, want an error", len(rh.Fields))
				}
				return
			case !errors.Is(err, tt.wantHeaders):
				t.Fatalf("ReadHeaders error = %v, want %v", err, tt.wantHeaders)
			case err != nil:
				return
			}
			buf := make([]byte, 64)
			for {
				_, err = s.ReadBody(buf)
				if err != nil {
					break
				}
			}
			if !errors.Is(err, tt.wantBody) {
				t.Fatalf("ReadBody error = %v, want %v", err, tt.wantBody)
			}
			if err == io.EOF && s.Trailers() == nil {
				t.Error("trailers lost")
			}
		})
	}
}

// TestClientCloseEndsRequestBody: a stream closed while its request body
// is still open leaves no goroutine behind (quic-go's body goroutine reads
// the body until it ends; cancelling the stream does not end it).
func TestClientCloseEndsRequestBody(t *testing.T) {
	got := make(chan struct{}, 1)
	u := startUpstream(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		// Once the first bytes arrived, quic-go's body goroutine is
		// running (and waiting for more).
		_, _ = io.ReadFull(r.Body, make([]byte, len("partial")))
		got <- struct{}{}
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	c := newTestClient(t)
	for _, closeErr := range []error{nil, errors.New("downstream reset")} {
		t.Run(fmt.Sprint(closeErr), func(t *testing.T) {
			s, err := c.NewStream(context.Background(), u.addr, u.dial)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.WriteHeaders(headers(":method", "POST", ":scheme", "https", ":authority", "b", ":path", "/"), false); err != nil {
				t.Fatal(err)
			}
			if err := s.WriteData([]byte("partial"), false); err != nil {
				t.Fatal(err)
			}
			select {
			case <-got:
			case <-time.After(5 * time.Second):
				t.Fatal("the upstream did not get the first bytes")
			}
			s.Close(closeErr)
			testutil.Eventually(t, 5*time.Second, func() error {
				buf := make([]byte, 1<<20)
				if st := string(buf[:runtime.Stack(buf, true)]); strings.Contains(st, "(*requestBody).Read") {
					return errors.New("a goroutine still reads the request body")
				}
				return nil
			})
		})
	}
}
