package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// reloadStatus is herald's /reload_status body.
type reloadStatus struct {
	Trigger  string   `json:"trigger"`
	OK       bool     `json:"ok"`
	Error    string   `json:"error"`
	Warnings []string `json:"warnings"`
	Applied  uint64   `json:"applied"`
	Rejected uint64   `json:"rejected"`
}

// directVhost is a "*" virtual host answering / with body and sending
// /slow to cluster slow.
func directVhost(body string) string {
	return fmt.Sprintf(`            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/slow" }
                route: { cluster: slow }
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: %q } }`, body)
}

// rewrite replaces herald's config file in place.
func rewrite(t testing.TB, h *testutil.Herald, cfg string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(h.Dir, "envoy.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sighup sends SIGHUP and waits until the reload it triggers has finished
// (applied or rejected); it returns /reload_status.
func sighup(t testing.TB, h *testutil.Herald) reloadStatus {
	t.Helper()
	var before reloadStatus
	h.AdminJSON("/reload_status", &before)
	h.Signal(syscall.SIGHUP)
	return waitReload(t, h, before.Applied+before.Rejected+1)
}

// waitReload polls /reload_status until n reloads have finished.
func waitReload(t testing.TB, h *testutil.Herald, n uint64) reloadStatus {
	t.Helper()
	var st reloadStatus
	testutil.Eventually(t, 10*time.Second, func() error {
		st = reloadStatus{}
		h.AdminJSON("/reload_status", &st)
		if st.Applied+st.Rejected < n {
			return fmt.Errorf("%d reloads finished, want %d: %+v", st.Applied+st.Rejected, n, st)
		}
		return nil
	})
	return st
}

// getBody GETs path on a new connection and returns the body.
func getBody(addr, path string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := nethttp.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// slowBackend answers each request only when release is closed; arrived
// receives one value per request that reached it.
func slowBackend(t *testing.T) (addr string, arrived <-chan struct{}, release chan struct{}) {
	got := make(chan struct{}, 16)
	rel := make(chan struct{})
	addr = testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, _ *nethttp.Request) {
		got <- struct{}{}
		<-rel
		io.WriteString(w, "slow")
	}))
	return addr, got, rel
}

func TestReloadRouteChange(t *testing.T) {
	t.Parallel()
	slowAddr, arrived, release := slowBackend(t)
	cfg := func(body string) string {
		return bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: directVhost(body)})}, staticCluster("slow", slowAddr))
	}
	h := testutil.Start(t, cfg("v1"))
	addr := h.ListenerAddr("web")

	// An idle keep-alive connection and one with a request in flight,
	// both accepted under the old config.
	idle, idleR := dialHTTP(t, addr)
	fmt.Fprint(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := readResponse(t, idleR, "GET"); body != "v1" {
		t.Fatalf("before reload: body %q, want v1", body)
	}
	busy, busyR := dialHTTP(t, addr)
	fmt.Fprint(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-arrived

	rewrite(t, h, cfg("v2"))
	if st := sighup(t, h); !st.OK || st.Trigger != "SIGHUP" {
		t.Fatalf("reload status %+v, want ok from SIGHUP", st)
	}

	// New connections use the new routes at once, on the same socket.
	if got := h.ListenerAddr("web"); got != addr {
		t.Fatalf("listener address moved from %s to %s: the socket must be kept", addr, got)
	}
	if body, err := getBody(addr, "/"); err != nil || body != "v2" {
		t.Fatalf("new connection after reload: body %q, err %v; want v2", body, err)
	}
	// Old connections drain: the busy one gets its response with
	// connection: close (Envoy's drain of a modified listener's
	// connections), the idle one is closed once drain_timeout passed.
	close(release)
	resp, body := readResponse(t, busyR, "GET")
	if resp.StatusCode != 200 || body != "slow" {
		t.Fatalf("in-flight request across the reload: %d %q, want 200 slow", resp.StatusCode, body)
	}
	if !resp.Close {
		t.Errorf("in-flight response on a draining connection: want connection: close, got %v", resp.Header)
	}
	waitClosed(t, busy, busyR, 5*time.Second)
	waitClosed(t, idle, idleR, 10*time.Second)

	waitStat(t, h, "listener_manager.listener_added", 1)
	waitStat(t, h, "listener_manager.listener_modified", 1)
	waitStat(t, h, "listener_manager.total_listeners_active", 1)
	waitStat(t, h, "listener_manager.total_listeners_draining", 0)
	waitStat(t, h, "cluster_manager.cluster_modified", 0)
	waitStat(t, h, "herald.config_reload.success", 1)

	// /config_dump shows the new config, and its listener was updated
	// after the cluster, which did not change.
	var dump struct {
		Configs []struct {
			Type            string `json:"@type"`
			StaticListeners []struct {
				Listener    json.RawMessage `json:"listener"`
				LastUpdated time.Time       `json:"last_updated"`
			} `json:"static_listeners"`
			StaticClusters []struct {
				LastUpdated time.Time `json:"last_updated"`
			} `json:"static_clusters"`
		} `json:"configs"`
	}
	h.AdminJSON("/config_dump", &dump)
	var lUpdated, cUpdated time.Time
	var lJSON string
	for _, c := range dump.Configs {
		for _, l := range c.StaticListeners {
			lUpdated, lJSON = l.LastUpdated, string(l.Listener)
		}
		for _, cl := range c.StaticClusters {
			cUpdated = cl.LastUpdated
		}
	}
	if !strings.Contains(lJSON, `"v2"`) {
		t.Errorf("/config_dump listener does not show the reloaded route: %s", lJSON)
	}
	if !lUpdated.After(cUpdated) {
		t.Errorf("listener last_updated %v, want after the unchanged cluster's %v", lUpdated, cUpdated)
	}
}

func TestReloadAddAndRemoveListeners(t *testing.T) {
	t.Parallel()
	slowAddr, _, _ := slowBackend(t)
	a := extraHCMListener(hcmSpec{name: "a", vhosts: directVhost("a")})
	b := extraHCMListener(hcmSpec{name: "b", vhosts: directVhost("b")})
	c := extraHCMListener(hcmSpec{name: "c", vhosts: directVhost("c")})
	h := testutil.Start(t, bootstrap([]string{a, b}, staticCluster("slow", slowAddr)))
	addrA, addrB := h.ListenerAddr("a"), h.ListenerAddr("b")

	// A keep-alive connection to the unchanged listener a.
	conn, r := dialHTTP(t, addrA)
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, body := readResponse(t, r, "GET"); body != "a" {
		t.Fatalf("a: body %q", body)
	}

	rewrite(t, h, bootstrap([]string{a, c}, staticCluster("slow", slowAddr)))
	if st := sighup(t, h); !st.OK {
		t.Fatalf("reload rejected: %+v", st)
	}
	addrC := h.ListenerAddr("c")
	if body, err := getBody(addrC, "/"); err != nil || body != "c" {
		t.Fatalf("added listener c: %q %v", body, err)
	}
	// b stopped accepting.
	testutil.Eventually(t, 5*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addrB, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("removed listener b still accepts on %s", addrB)
		}
		return nil
	})
	// a was not touched: same socket, and its open connection serves on
	// without connection: close.
	if got := h.ListenerAddr("a"); got != addrA {
		t.Fatalf("unchanged listener a moved from %s to %s", addrA, got)
	}
	fmt.Fprint(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := readResponse(t, r, "GET")
	if body != "a" || resp.Close {
		t.Fatalf("keep-alive connection to unchanged listener: body %q close %v; want a, kept open", body, resp.Close)
	}
	waitStat(t, h, "listener_manager.listener_added", 3)
	waitStat(t, h, "listener_manager.listener_removed", 1)
	waitStat(t, h, "listener_manager.listener_modified", 0)
	waitStat(t, h, "listener_manager.total_listeners_active", 2)
}

func TestReloadClusterEndpointChange(t *testing.T) {
	t.Parallel()
	one := testutil.HTTPBackend(t, httpHandler("one"))
	two := testutil.HTTPBackend(t, httpHandler("two"))
	cfg := func(backend string) string {
		return bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: catchAllVhost("backend")})}, staticCluster("backend", backend))
	}
	h := testutil.Start(t, cfg(one))
	addr := h.ListenerAddr("web")
	if body, err := getBody(addr, "/"); err != nil || body != "one" {
		t.Fatalf("before reload: %q %v", body, err)
	}
	// The node changes too: it needs a restart and is reported, not applied.
	rewrite(t, h, "node: { id: changed }\n"+cfg(two))
	st := sighup(t, h)
	if !st.OK {
		t.Fatalf("reload rejected: %+v", st)
	}
	if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "node") || !strings.Contains(st.Warnings[0], "restart") {
		t.Errorf("warnings %q, want one saying node needs a restart", st.Warnings)
	}
	if body, err := getBody(addr, "/"); err != nil || body != "two" {
		t.Fatalf("after reload: %q %v; want traffic on the new endpoint", body, err)
	}
	waitStat(t, h, "cluster_manager.cluster_modified", 1)
	waitStat(t, h, "listener_manager.listener_modified", 0)
	var info struct {
		Node struct {
			ID string `json:"id"`
		} `json:"node"`
	}
	h.AdminJSON("/server_info", &info)
	if info.Node.ID == "changed" {
		t.Errorf("/server_info node.id = %q: a node change must wait for a restart", info.Node.ID)
	}
}

func TestReloadRejectsBadConfig(t *testing.T) {
	t.Parallel()
	slowAddr, _, _ := slowBackend(t)
	good := bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: directVhost("v1")})}, staticCluster("slow", slowAddr))
	h := testutil.Start(t, good)
	addr := h.ListenerAddr("web")

	// A typo in a connection manager field.
	rewrite(t, h, strings.Replace(good, "stat_prefix: ingress_http", "stat_prefx: ingress_http", 1))
	st := sighup(t, h)
	if st.OK || st.Rejected != 1 {
		t.Fatalf("bad config: status %+v, want rejected", st)
	}
	if !strings.Contains(st.Error, "envoy.yaml:") || !strings.Contains(st.Error, "stat_prefx") {
		t.Errorf("error %q, want the loader's file:line:col error naming stat_prefx", st.Error)
	}
	// The log reaches the test through a pipe: poll it.
	testutil.Eventually(t, 5*time.Second, func() error {
		if out := h.Output(); !strings.Contains(out, "configuration reload rejected") || !strings.Contains(out, "stat_prefx") {
			return fmt.Errorf("the rejection is not logged:\n%s", out)
		}
		return nil
	})
	waitStat(t, h, "herald.config_reload.failure", 1)
	waitStat(t, h, "herald.config_reload.last_failed", 1)
	if body, err := getBody(addr, "/"); err != nil || body != "v1" {
		t.Fatalf("after a rejected reload: %q %v; want the old config serving", body, err)
	}
	if code, page := h.Admin("GET", "/dashboard"); code != 200 || !strings.Contains(page, "/reload_status") {
		t.Errorf("/dashboard does not show the reload status (%d)", code)
	}

	// Fixed: the next reload applies and clears the failure.
	rewrite(t, h, strings.Replace(good, `"v1"`, `"v2"`, 1))
	if st := sighup(t, h); !st.OK || st.Error != "" {
		t.Fatalf("fixed config: %+v", st)
	}
	waitStat(t, h, "herald.config_reload.last_failed", 0)
	if body, err := getBody(addr, "/"); err != nil || body != "v2" {
		t.Fatalf("after the fix: %q %v", body, err)
	}
}

func TestReloadWatchConfigAtomicRename(t *testing.T) {
	t.Parallel()
	slowAddr, _, _ := slowBackend(t)
	cfg := func(body string) string {
		return bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: directVhost(body)})}, staticCluster("slow", slowAddr))
	}
	h := testutil.Start(t, cfg("v1"), "--watch-config")
	addr := h.ListenerAddr("web")

	// Write the new version beside the file and rename it over (what
	// editors, config management and Kubernetes do).
	tmp := filepath.Join(h.Dir, ".envoy.yaml.tmp")
	if err := os.WriteFile(tmp, []byte(cfg("v2")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(h.Dir, "envoy.yaml")); err != nil {
		t.Fatal(err)
	}
	st := waitReload(t, h, 1)
	if !st.OK || st.Trigger != "watch" {
		t.Fatalf("status %+v, want ok from the watcher", st)
	}
	if body, err := getBody(addr, "/"); err != nil || body != "v2" {
		t.Fatalf("after the rename: %q %v", body, err)
	}
}

func TestReloadKeepsTCPProxyConnectionOfUnchangedListener(t *testing.T) {
	t.Parallel()
	echo := testutil.TCPEcho(t)
	slowAddr, _, _ := slowBackend(t)
	tcp := tcpProxyListener("tcp", "echo", "          cluster: echo\n")
	cfg := func(body string) string {
		return bootstrap([]string{tcp, extraHCMListener(hcmSpec{name: "web", vhosts: directVhost(body)})},
			staticCluster("echo", echo), staticCluster("slow", slowAddr))
	}
	h := testutil.Start(t, cfg("v1"))
	conn, r := dialHTTP(t, h.ListenerAddr("tcp"))
	roundTrip := func(msg string) {
		t.Helper()
		if _, err := io.WriteString(conn, msg+"\n"); err != nil {
			t.Fatalf("write: %v", err)
		}
		line, err := r.ReadString('\n')
		if err != nil || line != msg+"\n" {
			t.Fatalf("echo: %q %v, want %q", line, err, msg)
		}
	}
	roundTrip("before")
	rewrite(t, h, cfg("v2"))
	if st := sighup(t, h); !st.OK {
		t.Fatalf("reload rejected: %+v", st)
	}
	waitStat(t, h, "listener_manager.listener_modified", 1)
	roundTrip("after")
	// The changed listener's old connections are gone by now; the tunnel
	// through the unchanged one is not part of any drain.
	waitStat(t, h, "listener_manager.total_listeners_draining", 0)
	roundTrip("still")
}
