package integration

import (
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

func runHerald(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(testutil.Binary(t), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatal(err)
	}
	return 0, string(out)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCLI(t *testing.T) {
	t.Parallel()
	good := writeFile(t, "envoy.yaml", catchAllConfig("l", "b", staticCluster("b", "127.0.0.1:9"), ""))
	bad := writeFile(t, "bad.yaml", `static_resources:
  clusters:
  - name: b
    type: STATIC
    lb_policy: ROUND_ROBBIN
    connect_timeout: 1s
`)
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  []string
	}{
		{name: "validate ok", args: []string{"--mode", "validate", "-c", good}, wantCode: 0, wantOut: []string{"OK"}},
		{name: "validate bad names file line and field", args: []string{"--mode", "validate", "-c", bad}, wantCode: 1,
			wantOut: []string{"bad.yaml:5:16: static_resources.clusters[0].lb_policy", "ROUND_ROBIN"}},
		{name: "serve bad config exits 1", args: []string{"-c", bad}, wantCode: 1, wantOut: []string{"lb_policy"}},
		{name: "unknown flag", args: []string{"--no-such-flag"}, wantCode: 1, wantOut: []string{"Usage"}},
		{name: "version", args: []string{"--version"}, wantCode: 0, wantOut: []string{"herald version"}},
		{name: "missing config", args: []string{"--mode", "validate"}, wantCode: 1, wantOut: []string{"config-path"}},
		{name: "bad log level", args: []string{"-c", good, "-l", "loud"}, wantCode: 1, wantOut: []string{"log level"}},
		{name: "config-yaml alone", args: []string{"--mode", "validate", "--config-yaml", "static_resources: {}"}, wantCode: 0, wantOut: []string{"OK"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runHerald(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestSeedConfigsValidate(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"front-proxy.yaml", "path-routing.yaml", "tcp-proxy.yaml"} {
		t.Run(name, func(t *testing.T) {
			code, out := runHerald(t, "--mode", "validate", "-c", filepath.Join(testutil.RepoRoot(), "examples", name))
			if code != 0 {
				t.Fatalf("exit %d:\n%s", code, out)
			}
		})
	}
}

func TestGracefulShutdownOnSIGTERM(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		started <- struct{}{}
		<-release
		io.WriteString(w, "finished")
	}))
	h := testutil.Start(t, catchAllConfig("l", "b", staticCluster("b", backend), ""))
	addr := h.ListenerAddr("l")
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := newClient().Get("http://" + addr + "/")
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-started
	h.Signal(syscall.SIGTERM)
	// New connections are refused once draining starts.
	testutil.Eventually(t, 5*time.Second, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return fmt.Errorf("listener still accepting")
		}
		return nil
	})
	close(release)
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "finished" {
		t.Fatalf("in-flight request: %+v, want 200 finished", r)
	}
	code, ok := h.Wait(10 * time.Second)
	if !ok || code != 0 {
		t.Fatalf("exit code %d (exited %v), want 0", code, ok)
	}
}

func TestAdminEndpoints(t *testing.T) {
	t.Parallel()
	backend := testutil.NamedBackend(t, "b")
	h := testutil.Start(t, catchAllConfig("l", "b", staticCluster("b", backend), ""), "--service-cluster", "front", "--service-node", "node-1", "--concurrency", "1")
	tests := []struct {
		name     string
		method   string
		path     string
		wantCode int
		wantBody string
	}{
		{name: "ready", method: "GET", path: "/ready", wantCode: 200, wantBody: "LIVE"},
		{name: "server_info", method: "GET", path: "/server_info", wantCode: 200, wantBody: `"node-1"`},
		{name: "clusters", method: "GET", path: "/clusters", wantCode: 200, wantBody: "b::" + backend + "::health_flags::healthy"},
		{name: "config_dump", method: "GET", path: "/config_dump", wantCode: 200, wantBody: "BootstrapConfigDump"},
		{name: "listeners text", method: "GET", path: "/listeners", wantCode: 200, wantBody: "l::127.0.0.1:"},
		{name: "stats filter", method: "GET", path: "/stats?filter=server.live", wantCode: 200, wantBody: "server.live: 1"},
		{name: "concurrency flag", method: "GET", path: "/stats?filter=server.concurrency", wantCode: 200, wantBody: "server.concurrency: 1"},
		{name: "help", method: "GET", path: "/help", wantCode: 200, wantBody: "/quitquitquit"},
		{name: "quit needs POST", method: "GET", path: "/quitquitquit", wantCode: 405},
		{name: "healthcheck fail needs POST", method: "GET", path: "/healthcheck/fail", wantCode: 405},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.Admin(tc.method, tc.path)
			if code != tc.wantCode || !strings.Contains(body, tc.wantBody) {
				t.Fatalf("%s %s = %d\n%s\nwant %d containing %q", tc.method, tc.path, code, body, tc.wantCode, tc.wantBody)
			}
		})
	}
	// /healthcheck/fail flips /ready, /healthcheck/ok restores it.
	if code, _ := h.Admin("POST", "/healthcheck/fail"); code != 200 {
		t.Fatalf("/healthcheck/fail: %d", code)
	}
	if code, body := h.Admin("GET", "/ready"); code != 503 || !strings.Contains(body, "DRAINING") {
		t.Fatalf("/ready after fail = %d %q, want 503 DRAINING", code, body)
	}
	h.Admin("POST", "/healthcheck/ok")
	if code, _ := h.Admin("GET", "/ready"); code != 200 {
		t.Fatalf("/ready after ok = %d", code)
	}
	// /quitquitquit exits 0.
	if code, _ := h.Admin("POST", "/quitquitquit"); code != 200 {
		t.Fatalf("/quitquitquit: %d", code)
	}
	if code, ok := h.Wait(10 * time.Second); !ok || code != 0 {
		t.Fatalf("exit %d (exited %v), want 0", code, ok)
	}
}
