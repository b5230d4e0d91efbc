package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/herald-proxy/herald/internal/testutil"
)

// Full-duplex streaming through the router (issue #6): an HTTP/2 client and
// an HTTP/2 upstream exchange messages while the request is still open, as
// Envoy streams both directions at once; the route timeout starts only when
// the request ends (Envoy's router: onRequestComplete).
// https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter#config-http-filters-router-x-envoy-upstream-rq-timeout-ms

// lineEchoServer is an h2c upstream that echoes each request line as soon
// as it arrives; with hold it keeps the response open after the request
// ended until the client goes away.
func lineEchoServer(t *testing.T, hold bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.WriteHeader(200)
		w.(nethttp.Flusher).Flush()
		sc := bufio.NewScanner(r.Body)
		for sc.Scan() {
			fmt.Fprintf(w, "%s\n", sc.Text())
			w.(nethttp.Flusher).Flush()
		}
		if hold {
			<-r.Context().Done()
		}
	})
	srv := &nethttp.Server{Handler: h2c.NewHandler(h, &http2.Server{})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// h2cClient speaks HTTP/2 with prior knowledge.
func h2cClient() *nethttp.Client {
	return &nethttp.Client{Transport: &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
}

func TestDuplexStreaming(t *testing.T) {
	t.Parallel()
	vhosts := func(cluster, timeout string) string {
		return `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: ` + cluster + `, timeout: ` + timeout + ` }`
	}
	echo := lineEchoServer(t, false)
	held := lineEchoServer(t, true)
	h := testutil.Start(t, bootstrap([]string{
		extraHCMListener(hcmSpec{name: "echo", vhosts: vhosts("echo", "0.3s")}),
		extraHCMListener(hcmSpec{name: "held", vhosts: vhosts("held", "0.3s")}),
	}, h2Cluster("echo", echo), h2Cluster("held", held)))

	// open starts a streamed POST and returns its body writer and reader.
	open := func(t *testing.T, listener string) (*io.PipeWriter, *bufio.Reader, io.Closer) {
		t.Helper()
		pr, pw := io.Pipe()
		req, err := nethttp.NewRequest("POST", "http://"+h.ListenerAddr(listener)+"/stream", pr)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		res, err := h2cClient().Do(req.WithContext(ctx))
		if err != nil {
			t.Fatalf("response headers before the request ended: %v", err)
		}
		if res.StatusCode != 200 {
			t.Fatalf("status %d, want 200", res.StatusCode)
		}
		return pw, bufio.NewReader(res.Body), res.Body
	}

	t.Run("messages echo while the request is open, past the route timeout", func(t *testing.T) {
		pw, rd, body := open(t, "echo")
		defer body.Close()
		start := time.Now()
		for i := 0; i < 200 || time.Since(start) < 500*time.Millisecond; i++ {
			msg := fmt.Sprintf("message %d", i)
			if _, err := io.WriteString(pw, msg+"\n"); err != nil {
				t.Fatalf("write %q: %v", msg, err)
			}
			line, err := rd.ReadString('\n')
			if err != nil || strings.TrimSuffix(line, "\n") != msg {
				t.Fatalf("echo of %q: %q, %v", msg, line, err)
			}
		}
		pw.Close()
		if rest, err := io.ReadAll(rd); err != nil || len(rest) != 0 {
			t.Fatalf("after the request ended: %q, %v; want a clean end", rest, err)
		}
	})

	t.Run("route timeout runs from the end of the request", func(t *testing.T) {
		pw, rd, body := open(t, "held")
		defer body.Close()
		io.WriteString(pw, "hello\n")
		if line, err := rd.ReadString('\n'); err != nil || line != "hello\n" {
			t.Fatalf("echo: %q, %v", line, err)
		}
		pw.Close()
		ended := time.Now()
		if _, err := io.ReadAll(rd); err == nil {
			t.Fatal("a response held past the route timeout ended cleanly; want a reset")
		}
		if d := time.Since(ended); d < 250*time.Millisecond || d > 5*time.Second {
			t.Errorf("reset %v after the request ended, want about the 0.3s route timeout", d)
		}
	})
}
