package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// inPlaceListener is listener "l" with two tcp_proxy chains told apart by
// http_inspector: "web" for connections that start with an HTTP/1.1
// request line, "raw" for the others. webPrefix is the web chain's
// tcp_proxy stat_prefix (what the update changes); listenerExtra are more
// Listener fields, indented 4 spaces.
func inPlaceListener(webPrefix, listenerExtra string) string {
	return fmt.Sprintf(`  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
%s    listener_filters:
    - name: envoy.filters.listener.http_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector }
    filter_chains:
    - name: web
      filter_chain_match: { application_protocols: ["http/1.1"] }
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: %s, cluster: echo }
    - name: raw
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: raw, cluster: echo }
`, listenerExtra, webPrefix)
}

// tunnel is a client connection through tcp_proxy to the echo backend.
type tunnel struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// openTunnel connects and sends first (a line ending in "\n"), which picks
// the filter chain, and reads its echo.
func openTunnel(t *testing.T, addr, first string) *tunnel {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tu := &tunnel{t: t, c: c, r: bufio.NewReader(c)}
	tu.echo(first)
	return tu
}

// echo sends line (ending in "\n") and fails unless it comes back.
func (tu *tunnel) echo(line string) {
	tu.t.Helper()
	tu.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(tu.c, line); err != nil {
		tu.t.Fatalf("write %q: %v", line, err)
	}
	got, err := tu.r.ReadString('\n')
	if err != nil || got != line {
		tu.t.Fatalf("echo of %q: got %q, %v", line, got, err)
	}
}

// prober opens a new connection through the raw chain again and again and
// counts the ones that failed (refused, reset, wrong echo): a listener
// that is rebound or stops accepting shows up here.
type prober struct {
	stop     chan struct{}
	wg       sync.WaitGroup
	ok, fail atomic.Int64
	mu       sync.Mutex
	errs     []string
}

func startProber(addr string) *prober {
	p := &prober{stop: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			if err := probeOnce(addr); err != nil {
				p.fail.Add(1)
				p.mu.Lock()
				p.errs = append(p.errs, err.Error())
				p.mu.Unlock()
				continue
			}
			p.ok.Add(1)
		}
	}()
	return p
}

func probeOnce(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "probe\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != "probe\n" {
		return fmt.Errorf("probe echo: %q", got)
	}
	return nil
}

// finish stops the prober and returns how many probes passed and the
// failures.
func (p *prober) finish() (int64, []string) {
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.ok.Load(), p.errs
}

// TestListenerInPlaceFilterChainUpdate: a reload that changes one filter
// chain of a listener updates it in place (Envoy's filter chain only
// update, https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/listeners/listener_filters#filter-chain-only-update):
// the socket is not rebound, a tunnel on the unchanged chain survives, the
// tunnel on the changed chain is closed after --drain-time-s, new
// connections take the new chain. A later change of a listener field is a
// full update that drains the surviving tunnel too.
func TestListenerInPlaceFilterChainUpdate(t *testing.T) {
	t.Parallel()
	echo := testutil.TCPEcho(t)
	cfg := func(webPrefix, listenerExtra string) string {
		return bootstrap([]string{inPlaceListener(webPrefix, listenerExtra)}, staticCluster("echo", echo))
	}
	const drainTime = 2 * time.Second
	h := testutil.Start(t, cfg("web1", ""), "--drain-time-s", "2")
	addr := h.ListenerAddr("l")

	raw := openTunnel(t, addr, "hello\n")
	web := openTunnel(t, addr, "GET / HTTP/1.1\r\n")
	waitStat(t, h, "tcp.raw.downstream_cx_total", 1)
	waitStat(t, h, "tcp.web1.downstream_cx_total", 1)
	probe := startProber(addr)

	// Only the web chain changes (its stat_prefix).
	rewrite(t, h, cfg("web2", ""))
	if st := sighup(t, h); !st.OK {
		t.Fatalf("reload rejected: %+v", st)
	}
	reloaded := time.Now()
	for name, want := range map[string]int64{
		"listener_manager.listener_in_place_updated":    1,
		"listener_manager.listener_modified":            1,
		"listener_manager.total_filter_chains_draining": 1, // web's tunnel is open
		"listener_manager.total_listeners_draining":     0,
	} {
		if got := h.Stat(name); got != want {
			t.Errorf("after the reload: %s = %d, want %d", name, got, want)
		}
	}
	if got := h.ListenerAddr("l"); got != addr {
		t.Fatalf("listener address changed: %s, want %s", got, addr)
	}

	// New connections take the new web chain at once.
	openTunnel(t, addr, "GET /new HTTP/1.1\r\n")
	waitStat(t, h, "tcp.web2.downstream_cx_total", 1)

	// tcp_proxy ignores drain: the changed chain's tunnel is closed when
	// the drain time has passed, not before.
	waitClosed(t, web.c, web.r, drainTime+5*time.Second)
	if elapsed := time.Since(reloaded); elapsed < drainTime-200*time.Millisecond {
		t.Errorf("the changed chain's tunnel closed %v after the reload, before the drain time %v", elapsed, drainTime)
	}
	waitStat(t, h, "listener_manager.total_filter_chains_draining", 0)
	// The unchanged chain's tunnel outlived the drain.
	raw.echo("still-here\n")

	passed, failures := probe.finish()
	if len(failures) > 0 {
		t.Errorf("%d of %d new connections failed during the update: %v", len(failures), passed+int64(len(failures)), failures[:min(len(failures), 5)])
	}
	if passed == 0 {
		t.Error("no probe connection got through")
	}

	// A listener field change is a full update: every chain drains, the
	// raw tunnel is closed after the drain time.
	rewrite(t, h, cfg("web2", "    per_connection_buffer_limit_bytes: 65536\n"))
	if st := sighup(t, h); !st.OK {
		t.Fatalf("reload rejected: %+v", st)
	}
	if got := h.Stat("listener_manager.listener_in_place_updated"); got != 1 {
		t.Errorf("a listener field change counted as in-place: listener_in_place_updated = %d", got)
	}
	waitStat(t, h, "listener_manager.listener_modified", 2)
	waitClosed(t, raw.c, raw.r, drainTime+5*time.Second)
	openTunnel(t, addr, "hello-again\n")
}
