package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// hcmSpec describes one listener with an HTTP connection manager for
// extraHCMListener.
type hcmSpec struct {
	name    string // listener name
	address string // listener IP; default 127.0.0.1
	// hcmExtra holds HttpConnectionManager fields, indented 10 spaces.
	hcmExtra string
	// routeConfigExtra holds RouteConfiguration fields, indented 12 spaces.
	routeConfigExtra string
	// vhosts holds the virtual_hosts list items, indented 12 spaces.
	vhosts string
}

// extraHCMListener renders one listener entry (for static_resources.listeners).
func extraHCMListener(s hcmSpec) string {
	addr := s.address
	if addr == "" {
		addr = "127.0.0.1"
	}
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: %q, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress_http
%s          route_config:
            name: local_route
%s            virtual_hosts:
%s
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
`, s.name, addr, s.hcmExtra, s.routeConfigExtra, s.vhosts)
}

// catchAllVhost renders a "*" virtual host sending everything to cluster.
func catchAllVhost(cluster string) string {
	return `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/" }
                route: { cluster: ` + cluster + ` }`
}

// tcpProxyListener renders a tcp_proxy listener; proxyFields are TcpProxy
// fields indented 10 spaces (cluster, weighted_clusters, idle_timeout...).
func tcpProxyListener(name, statPrefix, proxyFields string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: %s
%s`, name, statPrefix, proxyFields)
}

// bootstrap assembles admin + listeners + clusters.
func bootstrap(listeners []string, clusters ...string) string {
	var b strings.Builder
	b.WriteString(adminBlock)
	b.WriteString("static_resources:\n  listeners:\n")
	for _, l := range listeners {
		b.WriteString(l)
	}
	if len(clusters) > 0 {
		b.WriteString("  clusters:\n")
		for _, c := range clusters {
			b.WriteString(c)
			if !strings.HasSuffix(c, "\n") {
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}

// waitStat polls until the stat equals want.
func waitStat(t *testing.T, h *testutil.Herald, name string, want int64) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		if v := h.Stat(name); v != want {
			return fmt.Errorf("%s = %d, want %d", name, v, want)
		}
		return nil
	})
}

// waitLines polls path until it holds at least n complete lines and
// returns them.
func waitLines(t *testing.T, path string, n int) []string {
	t.Helper()
	var lines []string
	testutil.Eventually(t, 10*time.Second, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		s := string(b)
		if i := strings.LastIndexByte(s, '\n'); i >= 0 {
			s = s[:i]
		} else {
			s = ""
		}
		lines = nil
		if s != "" {
			lines = strings.Split(s, "\n")
		}
		if len(lines) < n {
			return fmt.Errorf("%s has %d lines, want %d:\n%s", filepath.Base(path), len(lines), n, b)
		}
		return nil
	})
	return lines
}

// dialHTTP opens a raw connection and returns it with a buffered reader.
func dialHTTP(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

// readResponse reads one HTTP response (with body) from r.
func readResponse(t *testing.T, r *bufio.Reader, method string) (*nethttp.Response, string) {
	t.Helper()
	resp, err := nethttp.ReadResponse(r, &nethttp.Request{Method: method})
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading response body: %v", err)
	}
	return resp, string(b)
}

// waitClosed blocks until the peer closes c (EOF or reset) and returns how
// long that took; it fails if the peer sends data or the deadline passes.
func waitClosed(t *testing.T, c net.Conn, r io.Reader, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(timeout))
	buf := make([]byte, 512)
	n, err := r.Read(buf)
	elapsed := time.Since(start)
	if n > 0 {
		t.Fatalf("unexpected data before close: %q", buf[:n])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", timeout)
	}
	if err == nil {
		t.Fatal("read returned neither data nor error")
	}
	return elapsed
}

// promSample is one sample line of a Prometheus text exposition.
type promSample struct {
	name   string
	labels map[string]string
	value  string
}

// parseProm parses the sample lines (not # comments) of a Prometheus text
// exposition; it is enough for herald's and Envoy's output (no escaped
// quotes in label values).
func parseProm(t *testing.T, text string) []promSample {
	t.Helper()
	var out []promSample
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s := promSample{labels: map[string]string{}}
		head, value, ok := strings.Cut(line, " ")
		if i := strings.IndexByte(line, '}'); i >= 0 {
			head, value, ok = line[:i+1], strings.TrimSpace(line[i+1:]), true
		}
		if !ok {
			t.Fatalf("bad prometheus line %q", line)
		}
		s.value = value
		name, labels, hasLabels := strings.Cut(head, "{")
		s.name = name
		if hasLabels {
			labels = strings.TrimSuffix(labels, "}")
			for _, kv := range strings.Split(labels, ",") {
				if kv == "" {
					continue
				}
				k, v, _ := strings.Cut(kv, "=")
				s.labels[k] = strings.Trim(v, `"`)
			}
		}
		out = append(out, s)
	}
	return out
}

// findProm returns the value of the sample with exactly these labels, or
// "" and the names of samples of that metric for the error message.
func findProm(samples []promSample, name string, labels map[string]string) (string, []string) {
	var seen []string
	for _, s := range samples {
		if s.name != name {
			continue
		}
		seen = append(seen, fmt.Sprint(s.labels))
		if len(s.labels) != len(labels) {
			continue
		}
		match := true
		for k, v := range labels {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			return s.value, nil
		}
	}
	sort.Strings(seen)
	return "", seen
}
