package http3

import (
	"io"
	nethttp "net/http"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// A drain does not cut a stream that outlives the drain timeout: the
// connection closes only once no stream is active, as Envoy's drain
// sequence (onDrainTimeout then checkForDeferredClose) and the HTTP/2
// codec. max_connection_duration and max_requests_per_connection drain a
// connection this way, so a long download or WebSocket over HTTP/3 must
// survive them.
func TestServeDrainKeepsActiveStream(t *testing.T) {
	const drainTimeout = 10 * time.Millisecond
	ts := startServer(t, hhttp.ServerOptions{DrainTimeout: drainTimeout}, handlerFunc{serve: func(s hhttp.ServerStream) {
		// Echo the request body back byte by byte until it ends.
		s.WriteHeaders(headers(":status", "200"), false)
		b := make([]byte, 1)
		for {
			n, err := s.ReadBody(b)
			if n > 0 {
				if s.WriteData(b[:n], false) != nil {
					return
				}
			}
			if err != nil {
				s.WriteData(nil, true)
				return
			}
		}
	}})
	pr, pw := io.Pipe()
	defer pw.Close()
	req, _ := nethttp.NewRequest("POST", "https://"+ts.addr+"/", pr)
	resp, err := ts.client(t).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	echo := func() error {
		if _, err := pw.Write([]byte("x")); err != nil {
			return err
		}
		b := make([]byte, 1)
		_, err := io.ReadFull(resp.Body, b)
		return err
	}
	if err := echo(); err != nil {
		t.Fatalf("echo before drain: %v", err)
	}
	close(ts.drain)
	// Keep the stream busy for many drain timeouts.
	start := time.Now()
	for time.Since(start) < 20*drainTimeout {
		if err := echo(); err != nil {
			t.Fatalf("stream cut %v after drain (drain timeout %v): %v", time.Since(start), drainTimeout, err)
		}
	}
	pw.Close()
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("end of stream: %q, %v", rest, err)
	}
	select {
	case <-ts.errs:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return once the drained connection was idle")
	}
}
