package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	nethttp "net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Eventually calls fn until it returns nil or timeout passes; then it fails
// the test with fn's last error.
func Eventually(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	backoff := time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		// Polling interval between attempts, not a wait for an event.
		time.Sleep(backoff)
		if backoff < 50*time.Millisecond {
			backoff *= 2
		}
	}
}

// RepoRoot returns the module root (the directory holding go.mod).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds herald once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "herald-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "herald")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/herald")
		cmd.Dir = RepoRoot()
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Herald is a running herald process.
type Herald struct {
	t         testing.TB
	cmd       *exec.Cmd
	AdminAddr string
	Dir       string
	out       *syncBuffer
	done      chan struct{}
	exitCode  int

	adminPathFile string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start writes config to a temp file and starts herald on it with
// --admin-address-path, waiting until the admin address is known and
// /ready answers LIVE. The config must put the admin on 127.0.0.1:0.
func Start(t testing.TB, config string, args ...string) *Herald {
	t.Helper()
	h := StartNoWait(t, config, args...)
	h.WaitReady()
	return h
}

// StartNoWait starts herald without waiting for readiness.
func StartNoWait(t testing.TB, config string, args ...string) *Herald {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	adminPath := filepath.Join(dir, "admin.addr")
	all := append([]string{"-c", cfgPath, "--admin-address-path", adminPath, "--drain-time-s", "5"}, args...)
	cmd := exec.Command(bin, all...)
	h := &Herald{t: t, cmd: cmd, Dir: dir, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout = h.out
	cmd.Stderr = h.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		h.exitCode = cmd.ProcessState.ExitCode()
		close(h.done)
	}()
	t.Cleanup(func() {
		h.Stop()
		if t.Failed() {
			t.Logf("herald output:\n%s", h.out.String())
		}
	})
	h.adminPathFile = adminPath
	return h
}

// WaitReady polls the admin address file and /ready.
func (h *Herald) WaitReady() {
	h.t.Helper()
	Eventually(h.t, 10*time.Second, func() error {
		select {
		case <-h.done:
			return fmt.Errorf("herald exited (%d): %s", h.exitCode, h.out.String())
		default:
		}
		b, err := os.ReadFile(h.adminPathFile)
		if err != nil || len(b) == 0 {
			return fmt.Errorf("no admin address yet")
		}
		h.AdminAddr = strings.TrimSpace(string(b))
		resp, err := nethttp.Get("http://" + h.AdminAddr + "/ready")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("/ready: %d %s", resp.StatusCode, body)
		}
		return nil
	})
}

// Output returns what herald printed so far.
func (h *Herald) Output() string { return h.out.String() }

// Signal sends sig to herald.
func (h *Herald) Signal(sig syscall.Signal) { h.cmd.Process.Signal(sig) }

// Wait waits for herald to exit within timeout and returns its exit code.
func (h *Herald) Wait(timeout time.Duration) (int, bool) {
	select {
	case <-h.done:
		return h.exitCode, true
	case <-time.After(timeout):
		return 0, false
	}
}

// Stop kills herald by PID if it is still running.
func (h *Herald) Stop() {
	select {
	case <-h.done:
		return
	default:
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	<-h.done
}

// ListenerAddr returns the bound address of the named listener from
// /listeners?format=json.
func (h *Herald) ListenerAddr(name string) string {
	h.t.Helper()
	var out struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	h.AdminJSON("/listeners?format=json", &out)
	for _, l := range out.ListenerStatuses {
		if l.Name == name {
			sa := l.LocalAddress.SocketAddress
			if strings.Contains(sa.Address, ":") {
				return fmt.Sprintf("[%s]:%d", sa.Address, sa.PortValue)
			}
			return fmt.Sprintf("%s:%d", sa.Address, sa.PortValue)
		}
	}
	h.t.Fatalf("listener %q not in /listeners: %+v", name, out)
	return ""
}

// Admin GETs an admin path and returns status and body.
func (h *Herald) Admin(method, path string) (int, string) {
	h.t.Helper()
	req, _ := nethttp.NewRequest(method, "http://"+h.AdminAddr+path, nil)
	resp, err := nethttp.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// AdminJSON GETs an admin path and decodes its JSON body into v.
func (h *Herald) AdminJSON(path string, v any) {
	h.t.Helper()
	code, body := h.Admin("GET", path)
	if code != 200 {
		h.t.Fatalf("admin %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		h.t.Fatalf("admin %s: %v\n%s", path, err, body)
	}
}

// Stat returns the value of a counter or gauge from /stats?format=json,
// or -1 when absent.
func (h *Herald) Stat(name string) int64 {
	h.t.Helper()
	var out struct {
		Stats []struct {
			Name  string          `json:"name"`
			Value json.RawMessage `json:"value"`
		} `json:"stats"`
	}
	// Filtered by herald (Envoy's filter= regex), so that polling a stat
	// costs little even when herald has many.
	h.AdminJSON("/stats?format=json&filter="+url.QueryEscape("^"+regexp.QuoteMeta(name)+"$"), &out)
	for _, s := range out.Stats {
		if s.Name == name {
			var v int64
			json.Unmarshal(s.Value, &v)
			return v
		}
	}
	return -1
}
