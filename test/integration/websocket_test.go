package integration

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/herald-proxy/herald/internal/testutil"
)

// HTTP upgrades without upgrade_configs: herald answers every HTTP/1.1
// upgrade request as Envoy answers one that no upgrade_configs entry
// enables: 403, response_code_details upgrade_failed,
// downstream_rq_ws_on_non_ws_route, and the connection closes
// (ConnectionManagerImpl::ActiveStream::decodeHeaders;
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades).
func TestUpgradeRejected(t *testing.T) {
	t.Parallel()
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		fmt.Fprintf(w, "upgrade=%q", r.Header.Get("Upgrade"))
	}))
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/ws" }
                route: { cluster: web }`
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "l", vhosts: vhosts})}, staticCluster("web", backend)))
	addr := h.ListenerAddr("l")

	// exchange sends one raw request and reads the response.
	exchange := func(t *testing.T, req string) (*nethttp.Response, string) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			t.Fatal(err)
		}
		res, err := nethttp.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		return res, string(body)
	}
	const wsHeaders = "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"

	t.Run("websocket upgrade on a route gets 403 and the connection closes", func(t *testing.T) {
		res, _ := exchange(t, "GET /ws HTTP/1.1\r\nHost: example.com\r\n"+wsHeaders+"\r\n")
		if res.StatusCode != 403 {
			t.Fatalf("status %d, want 403", res.StatusCode)
		}
		if !res.Close {
			t.Error("the connection stays open after a rejected upgrade; Envoy closes it")
		}
		if got := h.Stat("http.ingress_http.downstream_rq_ws_on_non_ws_route"); got != 1 {
			t.Errorf("downstream_rq_ws_on_non_ws_route = %d, want 1", got)
		}
	})

	t.Run("upgrade without a matching route gets the router's 404", func(t *testing.T) {
		res, _ := exchange(t, "GET /other HTTP/1.1\r\nHost: example.com\r\n"+wsHeaders+"\r\n")
		if res.StatusCode != 404 {
			t.Fatalf("status %d, want 404", res.StatusCode)
		}
	})

	t.Run("upgrade header without the connection token is a normal request", func(t *testing.T) {
		res, body := exchange(t, "GET /ws HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\r\n")
		if res.StatusCode != 200 {
			t.Fatalf("status %d, want 200", res.StatusCode)
		}
		// Upgrade is hop-by-hop: not forwarded.
		if !strings.Contains(body, `upgrade=""`) {
			t.Errorf("backend saw %s, want no upgrade header", body)
		}
	})
}

// upgradeBackend serves /ws (a WebSocket echo), /custom (an "x-custom"
// upgrade echoing raw bytes upper-cased until the client half-closes) and
// /refuse (a plain 400 to an upgrade request).
func upgradeBackend(t *testing.T) string {
	mux := nethttp.NewServeMux()
	mux.HandleFunc("/ws", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		ctx := r.Context()
		for {
			typ, msg, err := c.Read(ctx)
			if err != nil {
				return
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				return
			}
		}
	})
	mux.HandleFunc("/custom", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "x-custom") {
			nethttp.Error(w, "want upgrade x-custom, got "+r.Header.Get("Upgrade"), 400)
			return
		}
		conn, brw, err := nethttp.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x-custom\r\nConnection: Upgrade\r\nX-Backend: custom\r\n\r\n")
		if brw.Flush() != nil {
			return
		}
		buf := make([]byte, 4096)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				if _, werr := conn.Write([]byte(strings.ToUpper(string(buf[:n])))); werr != nil {
					return
				}
			}
			if err != nil {
				// The client's half-close: answer with ours.
				return
			}
		}
	})
	mux.HandleFunc("/refuse", func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(400)
		io.WriteString(w, "no upgrade here")
	})
	return testutil.HTTPBackend(t, mux)
}

// TestWebSocket proxies upgrades over HTTP/1.1 both sides
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades):
// upgrade_configs on the connection manager enable WebSocket, a route
// disables it, another route enables a custom type; an allowed upgrade is
// forwarded with its Upgrade and Connection headers and, after the
// upstream's 101, both directions stream raw bytes, each ending on its own.
func TestWebSocket(t *testing.T) {
	t.Parallel()
	backend := upgradeBackend(t)
	logPath := filepath.Join(t.TempDir(), "access.log")
	hcmExtra := fmt.Sprintf(`          upgrade_configs:
          - upgrade_type: websocket
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format:
                text_format_source:
                  inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%BYTES_RECEIVED%% %%BYTES_SENT%%\n"
`, logPath)
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/ws-off" }
                route:
                  cluster: web
                  upgrade_configs: [{ upgrade_type: WebSocket, enabled: false }]
              - match: { prefix: "/custom" }
                route:
                  cluster: web
                  upgrade_configs: [{ upgrade_type: X-Custom }]
              - match: { prefix: "/" }
                route: { cluster: web }`
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "l", vhosts: vhosts, hcmExtra: hcmExtra})}, staticCluster("web", backend)))
	addr := h.ListenerAddr("l")

	// rawUpgrade sends an upgrade request on a new connection and reads
	// the response head.
	rawUpgrade := func(t *testing.T, path, typ string) (net.Conn, *bufio.Reader, *nethttp.Response) {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(20 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: example.com\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", path, typ)
		br := bufio.NewReader(c)
		res, err := nethttp.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, br, res
	}

	t.Run("10,000 WebSocket messages echo through herald", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		c, res, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.CloseNow()
		if res.StatusCode != 101 {
			t.Fatalf("handshake status %d, want 101", res.StatusCode)
		}
		c.SetReadLimit(1 << 20)
		const n = 10000
		for i := 0; i < n; i++ {
			msg := fmt.Sprintf("message %d", i)
			typ := websocket.MessageText
			if i%1000 == 999 {
				// Now and then a large binary message, split across reads.
				msg = strings.Repeat(msg, 64<<10/len(msg))
				typ = websocket.MessageBinary
			}
			if err := c.Write(ctx, typ, []byte(msg)); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			gotTyp, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if gotTyp != typ || string(got) != msg {
				t.Fatalf("message %d: got %v %.40q, want %v %.40q", i, gotTyp, got, typ, msg)
			}
		}
		if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
			t.Errorf("close handshake: %v", err)
		}
		waitStat(t, h, "http.ingress_http.downstream_cx_upgrades_active", 0)
		// One access-log entry for the whole upgraded stream, with the
		// bytes of both directions.
		var line string
		testutil.Eventually(t, 10*time.Second, func() error {
			b, _ := os.ReadFile(logPath)
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "/ws 101 ") {
					line = l
					return nil
				}
			}
			return fmt.Errorf("no /ws entry in %q", b)
		})
		var rx, tx int64
		if _, err := fmt.Sscanf(line, "/ws 101 %d %d", &rx, &tx); err != nil {
			t.Fatalf("access log line %q: %v", line, err)
		}
		if min := int64(10 * 64 << 10); rx < min || tx < min {
			t.Errorf("access log bytes received %d, sent %d; want both above %d", rx, tx, min)
		}
	})

	t.Run("WebSocket disabled on the route gets 403", func(t *testing.T) {
		before := h.Stat("http.ingress_http.downstream_rq_ws_on_non_ws_route")
		_, _, res := rawUpgrade(t, "/ws-off", "websocket")
		if res.StatusCode != 403 {
			t.Fatalf("status %d, want 403", res.StatusCode)
		}
		if !res.Close {
			t.Error("the connection stays open after a refused upgrade")
		}
		if got := h.Stat("http.ingress_http.downstream_rq_ws_on_non_ws_route"); got != before+1 {
			t.Errorf("downstream_rq_ws_on_non_ws_route = %d, want %d", got, before+1)
		}
	})

	t.Run("custom upgrade type enabled by its route, with half-close", func(t *testing.T) {
		c, br, res := rawUpgrade(t, "/custom", "X-Custom")
		if res.StatusCode != 101 {
			t.Fatalf("status %d, want 101", res.StatusCode)
		}
		if res.Header.Get("Upgrade") != "x-custom" || res.Header.Get("X-Backend") != "custom" {
			t.Errorf("101 headers %v, want the backend's upgrade: x-custom and x-backend", res.Header)
		}
		for _, w := range []string{"abc", "hello"} {
			io.WriteString(c, w)
			got := make([]byte, len(w))
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatalf("reading the echo of %q: %v", w, err)
			}
			if string(got) != strings.ToUpper(w) {
				t.Errorf("echo %q, want %q", got, strings.ToUpper(w))
			}
		}
		// The end of our direction reaches the backend, which answers
		// with what it still has and then ends its own.
		io.WriteString(c, "last")
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		rest, err := io.ReadAll(br)
		if err != nil {
			t.Fatalf("reading to the end: %v", err)
		}
		if string(rest) != "LAST" {
			t.Errorf("after the half-close got %q, want LAST and the end", rest)
		}
	})

	t.Run("custom upgrade type not enabled gets 403", func(t *testing.T) {
		_, _, res := rawUpgrade(t, "/other", "x-custom")
		if res.StatusCode != 403 {
			t.Fatalf("status %d, want 403", res.StatusCode)
		}
	})

	t.Run("upstream refusing the upgrade: its answer passes through", func(t *testing.T) {
		_, br, res := rawUpgrade(t, "/refuse", "websocket")
		if res.StatusCode != 400 {
			t.Fatalf("status %d, want 400", res.StatusCode)
		}
		body, err := io.ReadAll(res.Body)
		if err != nil || string(body) != "no upgrade here" {
			t.Errorf("body %q (%v), want the backend's", body, err)
		}
		if !res.Close {
			t.Error("the connection stays open after a refused upgrade; Envoy closes it")
		}
		if rest, _ := io.ReadAll(br); len(rest) != 0 {
			t.Errorf("bytes after the response: %q", rest)
		}
	})

	t.Run("stats", func(t *testing.T) {
		// /ws, /custom and /refuse were allowed upgrades; the 403s not.
		if got := h.Stat("http.ingress_http.downstream_cx_upgrades_total"); got != 3 {
			t.Errorf("downstream_cx_upgrades_total = %d, want 3", got)
		}
		waitStat(t, h, "http.ingress_http.downstream_cx_upgrades_active", 0)
		if got := h.Stat("http.ingress_http.downstream_rq_1xx"); got != 2 {
			t.Errorf("downstream_rq_1xx = %d, want 2", got)
		}
	})
}
