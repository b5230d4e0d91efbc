package integration

import (
	"context"
	"fmt"
	"io"
	nethttp "net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/herald-proxy/herald/internal/testutil"
)

// loadGenerator keeps several keep-alive clients sending GET / to addr and
// counts every response, so that a test can say how many failed while
// herald's config changed underneath. A failure is a transport error or a
// status other than 200.
type loadGenerator struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	total    int
	failures []string
	bodies   map[string]int
}

// startLoad starts workers clients. Each uses Go's transport with
// keep-alive, as a real client would: a connection herald closes while
// idle is replaced, and Go retries an idempotent request that found its
// reused connection closed before any byte of a response (which is what
// HTTP/1.1 keep-alive clients are expected to do, RFC 9112 §9.3.1).
func startLoad(t *testing.T, addr string, workers int) *loadGenerator {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lg := &loadGenerator{cancel: cancel, bodies: map[string]int{}}
	for range workers {
		lg.wg.Add(1)
		go func() {
			defer lg.wg.Done()
			c := &nethttp.Client{Timeout: 10 * time.Second, Transport: &nethttp.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
			defer c.CloseIdleConnections()
			for ctx.Err() == nil {
				req, _ := nethttp.NewRequestWithContext(ctx, "GET", "http://"+addr+"/", nil)
				resp, err := c.Do(req)
				if ctx.Err() != nil {
					return
				}
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				lg.mu.Lock()
				lg.total++
				switch {
				case err != nil:
					lg.failures = append(lg.failures, err.Error())
				case resp.StatusCode != 200:
					lg.failures = append(lg.failures, fmt.Sprintf("status %d: %s", resp.StatusCode, body))
				default:
					lg.bodies[string(body)]++
				}
				lg.mu.Unlock()
			}
		}()
	}
	return lg
}

// count returns the responses so far.
func (lg *loadGenerator) count() int {
	lg.mu.Lock()
	defer lg.mu.Unlock()
	return lg.total
}

// waitMore waits until n more responses have been counted, so that every
// config change is crossed by traffic.
func (lg *loadGenerator) waitMore(t *testing.T, n int) {
	t.Helper()
	want := lg.count() + n
	testutil.Eventually(t, 10*time.Second, func() error {
		if got := lg.count(); got < want {
			return fmt.Errorf("%d responses, want %d", got, want)
		}
		return nil
	})
}

// stop stops the clients and checks that no request failed.
func (lg *loadGenerator) stop(t *testing.T) map[string]int {
	t.Helper()
	lg.cancel()
	lg.wg.Wait()
	lg.mu.Lock()
	defer lg.mu.Unlock()
	if len(lg.failures) > 0 {
		show := lg.failures
		if len(show) > 10 {
			show = show[:10]
		}
		t.Errorf("%d of %d requests failed; first ones:\n%s", len(lg.failures), lg.total, strings.Join(show, "\n"))
	}
	t.Logf("%d requests, %d failed; bodies: %v", lg.total, len(lg.failures), lg.bodies)
	return lg.bodies
}

// TestZeroFailedRequestsAcrossXDSUpdates is issue #7's acceptance test: a
// load generator runs while go-control-plane's management server pushes
// 100 consecutive changes — route retargeting (RDS), endpoint churn (EDS)
// and listener changes (LDS: a changed listener drains its connections on
// the same socket) — and every response is counted: none may fail.
func TestZeroFailedRequestsAcrossXDSUpdates(t *testing.T) {
	t.Parallel()
	backends := map[string]string{}
	for _, n := range []string{"a1", "a2", "b1", "b2"} {
		backends[n] = testutil.HTTPBackend(t, httpHandler(n))
	}
	ms := startManagementServer(t)

	// Each type is versioned on its own (pinned), as control planes do, so
	// that a push resends only the type that changed.
	vers := map[resourcev3.Type]int{}
	state := struct {
		routeTo   string // cluster the route sends / to
		endpoints map[string]string
		server    int // the listener's server_name generation
	}{routeTo: "a", endpoints: map[string]string{"a": "a1", "b": "b1"}}
	snapshot := func() (map[resourcev3.Type][]types.Resource, map[resourcev3.Type]string) {
		pinned := map[resourcev3.Type]string{}
		for _, typ := range []resourcev3.Type{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
			pinned[typ] = fmt.Sprint(vers[typ])
		}
		return map[resourcev3.Type][]types.Resource{
			resourcev3.ListenerType: {xdsListener(t, "web", fmt.Sprintf("      server_name: gen-%d\n", state.server))},
			resourcev3.RouteType:    {routesTo(t, state.routeTo, "direct")},
			resourcev3.ClusterType:  {edsCluster(t, "a"), edsCluster(t, "b")},
			resourcev3.EndpointType: {
				assignment(t, "a", backends[state.endpoints["a"]]),
				assignment(t, "b", backends[state.endpoints["b"]]),
			},
		}, pinned
	}
	res, pinned := snapshot()
	ms.push(t, "v0", res, pinned)

	h := testutil.Start(t, adsBootstrap(ms.addr))
	addr := h.ListenerAddr("web")
	testutil.Eventually(t, 10*time.Second, func() error {
		body, err := getBody(addr, "/")
		if err != nil || body != "a1" {
			return fmt.Errorf("GET / = %q, %v; want a1", body, err)
		}
		return nil
	})

	lg := startLoad(t, addr, 4)
	lg.waitMore(t, 20)
	statFor := map[resourcev3.Type]string{
		resourcev3.ListenerType: "listener_manager.lds.update_success",
		resourcev3.RouteType:    "http.xds.rds.routes.update_success",
		resourcev3.EndpointType: "cluster.a.update_success",
	}
	const changes = 100
	for i := 1; i <= changes; i++ {
		var typ resourcev3.Type
		switch i % 3 {
		case 0: // route retargeting
			typ = resourcev3.RouteType
			state.routeTo = map[string]string{"a": "b", "b": "a"}[state.routeTo]
		case 1: // endpoint churn on both clusters
			typ = resourcev3.EndpointType
			for c, cur := range state.endpoints {
				state.endpoints[c] = map[string]string{"a1": "a2", "a2": "a1", "b1": "b2", "b2": "b1"}[cur]
			}
		case 2: // listener change
			typ = resourcev3.ListenerType
			state.server++
		}
		before := h.Stat(statFor[typ])
		vers[typ]++
		res, pinned := snapshot()
		ms.push(t, fmt.Sprintf("v%d", i), res, pinned)
		testutil.Eventually(t, 10*time.Second, func() error {
			if v := h.Stat(statFor[typ]); v <= before {
				return fmt.Errorf("change %d (%s): %s = %d, not applied yet", i, typ, statFor[typ], v)
			}
			return nil
		})
		lg.waitMore(t, 5)
	}
	bodies := lg.stop(t)
	var seen []string
	for b := range bodies {
		seen = append(seen, b)
	}
	sort.Strings(seen)
	if strings.Join(seen, ",") != "a1,a2,b1,b2" {
		t.Errorf("responses came from %v; want every backend the changes moved traffic to (a1,a2,b1,b2)", seen)
	}
	if n := len(ms.nacked(resourcev3.ListenerType)) + len(ms.nacked(resourcev3.RouteType)) + len(ms.nacked(resourcev3.EndpointType)); n != 0 {
		t.Errorf("herald NACKed %d of the updates", n)
	}
}

// TestZeroFailedRequestsAcrossSIGHUPReloads: 100 reloads of a static
// bootstrap by SIGHUP, each changing the listener's routes (so each one
// replaces the listener and drains its connections), under load; no
// request may fail.
func TestZeroFailedRequestsAcrossSIGHUPReloads(t *testing.T) {
	t.Parallel()
	one := testutil.HTTPBackend(t, httpHandler("one"))
	two := testutil.HTTPBackend(t, httpHandler("two"))
	cfg := func(cluster string) string {
		return bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: catchAllVhost(cluster)})},
			staticCluster("one", one), staticCluster("two", two))
	}
	h := testutil.Start(t, cfg("one"))
	addr := h.ListenerAddr("web")
	lg := startLoad(t, addr, 4)
	lg.waitMore(t, 20)
	const reloads = 100
	for i := 1; i <= reloads; i++ {
		target := "one"
		if i%2 == 1 {
			target = "two"
		}
		rewrite(t, h, cfg(target))
		if st := sighup(t, h); !st.OK {
			t.Fatalf("reload %d rejected: %s", i, st.Error)
		}
		lg.waitMore(t, 5)
	}
	bodies := lg.stop(t)
	if bodies["one"] == 0 || bodies["two"] == 0 {
		t.Errorf("responses %v: want both clusters' answers (each reload moved the route)", bodies)
	}
}
