package integration

import (
	"errors"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestTCPProxyBackpressure: 1 GiB through tcp_proxy from a sender that
// writes as fast as it can to a reader that is deliberately slow at first.
// herald reads from the sender only as fast as it can write to the reader
// (Envoy's watermark backpressure,
// https://www.envoyproxy.io/docs/envoy/latest/faq/debugging/why_is_envoy_using_too_much_memory
// and per_connection_buffer_limit_bytes), so while the reader is slow the
// sender is held back by the socket buffers, and herald's peak RSS stays
// flat for the whole transfer. The reader is slow only for its first
// 1.5 s (16 KiB per 10 ms), then drains at full speed, to keep the test
// fast: an unbounded proxy would have taken the whole gigabyte into memory
// during the slow phase.
func TestTCPProxyBackpressure(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 1 GiB")
	}
	t.Parallel()
	const (
		total     = 1 << 30
		slowFor   = 1500 * time.Millisecond
		slowChunk = 16 << 10
		// inFlight bounds what the sender may have written when the slow
		// phase ends: the kernel's socket buffers on both sides of herald
		// (tcp_wmem/tcp_rmem autotuning, a few MiB each) plus herald's two
		// 32 KiB copy buffers. Without backpressure it would be ~1 GiB.
		inFlight = 96 << 20
		// rssGrowth bounds herald's peak RSS over its idle peak.
		rssGrowth = 32 << 20
	)
	var sent atomic.Int64
	type result struct {
		read                             int64
		readAtFastStart, sentAtFastStart int64
		err                              error
	}
	done := make(chan result, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		var r result
		buf := make([]byte, slowChunk)
		tick := time.NewTicker(10 * time.Millisecond)
		end := time.Now().Add(slowFor)
		for time.Now().Before(end) {
			<-tick.C
			n, err := c.Read(buf)
			r.read += int64(n)
			if err != nil {
				tick.Stop()
				r.err = err
				done <- r
				return
			}
		}
		tick.Stop()
		r.sentAtFastStart, r.readAtFastStart = sent.Load(), r.read
		n, err := io.Copy(io.Discard, c)
		r.read += n
		r.err = err
		done <- r
	}()

	h := testutil.Start(t, bootstrap([]string{tcpProxyListener("bulk", "bulk", "          cluster: slow\n")},
		staticCluster("slow", ln.Addr().String())))
	idle, err := h.PeakRSS()
	if err != nil {
		t.Skipf("no /proc VmHWM: %v", err)
	}
	c, err := net.Dial("tcp", h.ListenerAddr("bulk"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(60 * time.Second))
	chunk := make([]byte, 1<<20)
	for sent.Load() < total {
		n, err := c.Write(chunk)
		sent.Add(int64(n))
		if err != nil {
			t.Fatalf("write after %d bytes: %v", sent.Load(), err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("reader not done after 60 s; sent %d", sent.Load())
	}
	elapsed := time.Since(start)
	if r.err != nil && !errors.Is(r.err, io.EOF) {
		t.Fatalf("reader: %v after %d bytes", r.err, r.read)
	}
	if r.read != total {
		t.Errorf("reader got %d bytes, want %d", r.read, total)
	}
	peak, err := h.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1 GiB in %v; when the reader sped up it had read %.1f MiB and the sender had written %.1f MiB; herald VmHWM %.1f MiB idle, %.1f MiB after the transfer",
		elapsed.Round(time.Millisecond), float64(r.readAtFastStart)/(1<<20), float64(r.sentAtFastStart)/(1<<20), float64(idle)/(1<<20), float64(peak)/(1<<20))
	if r.sentAtFastStart > inFlight {
		t.Errorf("the sender had written %d MiB while the reader was slow, want at most %d MiB (no backpressure)", r.sentAtFastStart>>20, inFlight>>20)
	}
	if peak-idle > rssGrowth {
		t.Errorf("herald's peak RSS grew by %.1f MiB (%d → %d), want at most %d MiB", float64(peak-idle)/(1<<20), idle, peak, rssGrowth>>20)
	}
}
