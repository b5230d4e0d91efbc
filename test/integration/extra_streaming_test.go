package integration

import (
	"fmt"
	"io"
	nethttp "net/http"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestExtraStreamingBoundedMemory moves 1 GiB down and 1 GiB up through
// herald and checks that its peak RSS stays bounded: bodies stream with
// flow control (Envoy's buffer watermarks) and are never held whole.
// https://www.envoyproxy.io/docs/envoy/latest/faq/configuration/flow_control
func TestExtraStreamingBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2 GiB; skipped with -short")
	}
	t.Parallel()
	const (
		size     = 1 << 30
		rssBound = 200 << 20
	)
	chunk := make([]byte, 256<<10)
	for i := range chunk {
		chunk[i] = byte('a' + i%26)
	}
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.Method == "POST" {
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				nethttp.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d", n)
			return
		}
		w.Header().Set("content-length", fmt.Sprint(size))
		for sent := 0; sent < size; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: big, timeout: 0s }`
	l := extraHCMListener(hcmSpec{name: "l", vhosts: vhosts})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("big", backend)))
	base := "http://" + h.ListenerAddr("l")
	c := &nethttp.Client{Timeout: 60 * time.Second, Transport: &nethttp.Transport{DisableCompression: true}}
	startRSS, err := h.PeakRSS()
	if err != nil {
		t.Skipf("cannot read herald's VmHWM: %v", err)
	}

	start := time.Now()
	resp, err := c.Get(base + "/download")
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || n != size {
		t.Fatalf("download: %d bytes, %v; want %d", n, err, size)
	}
	down := time.Since(start)

	start = time.Now()
	req, _ := nethttp.NewRequest("POST", base+"/upload", io.LimitReader(repeatReader{chunk: chunk}, size))
	req.ContentLength = size
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != fmt.Sprint(size) {
		t.Fatalf("upload: %d, backend saw %q bytes; want 200 %d", resp.StatusCode, b, size)
	}
	up := time.Since(start)

	peak, err := h.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	mib := func(d time.Duration) float64 { return float64(size) / (1 << 20) / d.Seconds() }
	t.Logf("download 1 GiB in %v (%.0f MiB/s), upload 1 GiB in %v (%.0f MiB/s); herald peak RSS %.1f MiB (%.1f MiB at start)",
		down.Round(time.Millisecond), mib(down), up.Round(time.Millisecond), mib(up), float64(peak)/(1<<20), float64(startRSS)/(1<<20))
	if peak > rssBound {
		t.Errorf("herald peak RSS %d MiB, want under %d MiB", peak>>20, rssBound>>20)
	}
}

// repeatReader yields chunk over and over.
type repeatReader struct{ chunk []byte }

func (r repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		n += copy(p[n:], r.chunk)
	}
	return n, nil
}
