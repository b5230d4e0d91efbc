package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// exampleConfig reads examples/<name> and rewrites its fixed ports so the
// test can run it on loopback: listener ports become 0, each backend port is
// replaced by the address of a backend started by the test. The rest of the
// Envoy config is used unchanged.
func exampleConfig(t *testing.T, name string, listenerPorts []string, backends map[string]string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, p := range listenerPorts {
		s = strings.ReplaceAll(s, "address: 0.0.0.0, port_value: "+p+" }", "address: 127.0.0.1, port_value: 0 }")
	}
	for port, addr := range backends {
		_, bp, _ := net.SplitHostPort(addr)
		s = strings.ReplaceAll(s, "port_value: "+port+" }", "port_value: "+bp+" }")
	}
	s = strings.ReplaceAll(s, "port_value: 9901", "port_value: 0")
	if !strings.Contains(s, "admin:") {
		s = adminBlock + s
	}
	return s
}

func TestExampleFrontProxy(t *testing.T) {
	t.Parallel()
	backend := testutil.HTTPBackend(t, httpHandler("Hello from backend!"))
	h := testutil.Start(t, exampleConfig(t, "front-proxy.yaml", []string{"10000"}, map[string]string{"9090": backend}))
	code, _, body := get(t, newClient(), "http://"+h.ListenerAddr("listener_0")+"/", "")
	if code != 200 || body != "Hello from backend!" {
		t.Fatalf("got %d %q, want 200 Hello from backend!", code, body)
	}
}

func TestExamplePathRouting(t *testing.T) {
	t.Parallel()
	backends := map[string]string{}
	for i, port := range []string{"8080", "8081", "8082", "8083"} {
		backends[port] = testutil.NamedBackend(t, fmt.Sprintf("app%d", i+1))
	}
	h := testutil.Start(t, exampleConfig(t, "path-routing.yaml", []string{"8000"}, backends))
	base := "http://" + h.ListenerAddr("http_listener")
	c := newClient()
	for path, want := range map[string]string{"/admin": "Forbidden", "/app3/x": "app3", "/app4": "app4"} {
		if _, _, body := get(t, c, base+path, ""); body != want {
			t.Errorf("GET %s = %q, want %q", path, body, want)
		}
	}
}

func TestExampleTCPProxy(t *testing.T) {
	t.Parallel()
	echo := testutil.TCPEcho(t)
	h := testutil.Start(t, exampleConfig(t, "tcp-proxy.yaml", []string{"8001"}, map[string]string{"8080": echo}))
	c, err := net.Dial("tcp", h.ListenerAddr("tcp_listener"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "ping")
	c.(*net.TCPConn).CloseWrite()
	if got, _ := io.ReadAll(c); string(got) != "ping" {
		t.Fatalf("echo through the example = %q, want ping", got)
	}
}
