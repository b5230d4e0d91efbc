package upstream

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/herald-proxy/herald/internal/stats"
)

// TestResourceLimits: a resource admits up to its max, its open gauge is 1
// exactly while it is at the limit, and remaining_* (track_remaining)
// follows the count, as Envoy's ManagedResourceImpl.
func TestResourceLimits(t *testing.T) {
	st := stats.NewStore()
	sc := st.Scope("cluster.c.")
	rms := newResourceManagers(sc, [2]Thresholds{
		{MaxConnections: 2, MaxPendingRequests: 1, MaxRequests: 2, MaxRetries: 1},
		defaultThresholds,
	}, [2]breakerOptions{{trackRemaining: true}, {}})
	rm := rms[PriorityDefault]
	open := func(name string) int64 { return st.Gauge("cluster.c.circuit_breakers.default." + name).Value() }

	steps := []struct {
		name          string
		do            func() bool
		want          bool
		wantOpen      int64
		wantRemaining int64
	}{
		{name: "first", do: rm.Requests.TryAcquire, want: true, wantOpen: 0, wantRemaining: 1},
		{name: "second reaches the limit", do: rm.Requests.TryAcquire, want: true, wantOpen: 1, wantRemaining: 0},
		{name: "third refused", do: rm.Requests.TryAcquire, want: false, wantOpen: 1, wantRemaining: 0},
		{name: "release", do: func() bool { rm.Requests.Dec(); return true }, want: true, wantOpen: 0, wantRemaining: 1},
		{name: "again", do: rm.Requests.TryAcquire, want: true, wantOpen: 1, wantRemaining: 0},
	}
	for _, s := range steps {
		if got := s.do(); got != s.want {
			t.Fatalf("%s: got %v, want %v", s.name, got, s.want)
		}
		if got := open("rq_open"); got != s.wantOpen {
			t.Errorf("%s: rq_open = %d, want %d", s.name, got, s.wantOpen)
		}
		if got := open("remaining_rq"); got != s.wantRemaining {
			t.Errorf("%s: remaining_rq = %d, want %d", s.name, got, s.wantRemaining)
		}
	}
	// Inc counts over the limit (a connection that exists), CanCreate says no.
	rm.Connections.Inc()
	rm.Connections.Inc()
	rm.Connections.Inc()
	if rm.Connections.CanCreate() || open("cx_open") != 1 || open("remaining_cx") != 0 {
		t.Errorf("over the limit: CanCreate = %v, cx_open = %d, remaining_cx = %d", rm.Connections.CanCreate(), open("cx_open"), open("remaining_cx"))
	}
	// Initial remaining gauges show the limits; unlimited pools clamp.
	if got := open("remaining_pending"); got != 1 {
		t.Errorf("remaining_pending = %d, want 1", got)
	}
	if got := open("remaining_cx_pools"); got <= 0 {
		t.Errorf("remaining_cx_pools = %d, want the (unlimited) max", got)
	}
	// Without track_remaining there are no remaining_* gauges (the high
	// priority here), but the open gauges exist.
	for _, g := range st.Gauges() {
		if g.Name() == "cluster.c.circuit_breakers.high.remaining_rq" {
			t.Error("remaining_rq exists for high priority without track_remaining")
		}
	}
	if g := st.Gauge("cluster.c.circuit_breakers.high.rq_open"); g.Value() != 0 {
		t.Errorf("high rq_open = %d", g.Value())
	}
}

// TestRetryBudget: with retry_budget the retry limit is budget_percent of
// the active plus pending requests, at least min_retry_concurrency
// (Envoy's RetryBudgetImpl); max_retries is ignored.
func TestRetryBudget(t *testing.T) {
	st := stats.NewStore()
	rm := newResourceManager(st.Scope("cb."), Thresholds{MaxConnections: 100, MaxPendingRequests: 100, MaxRequests: 100, MaxRetries: 1},
		breakerOptions{budget: &retryBudget{percent: 50, minConcurrency: 2}, trackRemaining: true}, newOverflowStats(st.Scope("")))
	tests := []struct {
		name     string
		requests int
		pending  int
		wantMax  uint64
	}{
		{name: "idle uses the minimum", wantMax: 2},
		{name: "half of active and pending", requests: 8, pending: 2, wantMax: 5},
		{name: "minimum wins", requests: 3, wantMax: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < tc.requests; i++ {
				rm.Requests.Inc()
			}
			for i := 0; i < tc.pending; i++ {
				rm.PendingRequests.Inc()
			}
			defer func() {
				for i := 0; i < tc.requests; i++ {
					rm.Requests.Dec()
				}
				for i := 0; i < tc.pending; i++ {
					rm.PendingRequests.Dec()
				}
			}()
			if got := rm.Retries.Max(); got != tc.wantMax {
				t.Errorf("Max = %d, want %d", got, tc.wantMax)
			}
			var n uint64
			for rm.Retries.TryAcquire() {
				n++
			}
			if n != tc.wantMax {
				t.Errorf("acquired %d retries, want %d", n, tc.wantMax)
			}
			for ; n > 0; n-- {
				rm.Retries.Dec()
			}
		})
	}
	if got := st.Gauge("cb.remaining_retries").Value(); got != 0 {
		t.Errorf("remaining_retries = %d, want 0 under a budget", got)
	}
}

// TestParseCircuitBreakers: the first thresholds of a priority win, unset
// fields keep Envoy's defaults, and the extra fields are read.
func TestParseCircuitBreakers(t *testing.T) {
	m, st := newTestManager(t)
	y := `
- name: c
  circuit_breakers:
    thresholds:
    - {priority: HIGH, max_requests: 7, max_connection_pools: 1, track_remaining: true}
    - {priority: HIGH, max_requests: 9}
    - {max_retries: 5, retry_budget: {budget_percent: {value: 10}}}
`
	if err := m.Apply(context.Background(), parseClusters(t, y), prefix); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("c")
	if got, want := c.Thresholds(true), (Thresholds{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 7, MaxRetries: 3}); got != want {
		t.Errorf("high = %+v, want %+v", got, want)
	}
	high := c.Resources(PriorityHigh)
	if high.ConnectionPools.Max() != 1 || high.Requests.Max() != 7 {
		t.Errorf("high pools, requests = %d, %d; want 1, 7", high.ConnectionPools.Max(), high.Requests.Max())
	}
	if got := st.Gauge("cluster.c.circuit_breakers.high.remaining_rq").Value(); got != 7 {
		t.Errorf("high remaining_rq = %d, want 7", got)
	}
	def := c.Resources(PriorityDefault)
	if def.Retries.budget == nil || def.Retries.budget.percent != 10 || def.Retries.budget.minConcurrency != 3 {
		t.Errorf("default retry budget = %+v, want 10%% with the default minimum 3", def.Retries.budget)
	}
}

// TestDialConnectionPools: a host's first connection takes one of
// max_connection_pools; over the limit Dial fails with ErrPoolOverflow and
// counts upstream_cx_pool_overflow; the pool is given back with the host's
// last connection.
func TestDialConnectionPools(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	m, st := newTestManager(t)
	y := `- {name: a, circuit_breakers: {thresholds: [{max_connection_pools: 1}]}}`
	if err := m.Apply(context.Background(), parseClusters(t, y), prefix); err != nil {
		t.Fatal(err)
	}
	c := m.Cluster("a")
	h1, h2 := hostAt(c, ln.Addr().String()), hostAt(c, ln.Addr().String())
	a, err := c.Dial(context.Background(), h1)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Dial(context.Background(), h1)
	if err != nil {
		t.Fatalf("second connection of the same host: %v", err)
	}
	if _, err := c.Dial(context.Background(), h2); !errors.Is(err, ErrPoolOverflow) {
		t.Fatalf("another host's pool: err = %v, want ErrPoolOverflow", err)
	}
	if got := st.Counter("cluster.a.upstream_cx_pool_overflow").Value(); got != 1 {
		t.Errorf("upstream_cx_pool_overflow = %d, want 1", got)
	}
	rm := c.Resources(PriorityDefault)
	if rm.Connections.Count() != 2 {
		t.Errorf("connections = %d, want 2", rm.Connections.Count())
	}
	a.Close()
	b.Close()
	if rm.Connections.Count() != 0 || rm.ConnectionPools.Count() != 0 {
		t.Errorf("after close: connections, pools = %d, %d; want 0, 0", rm.Connections.Count(), rm.ConnectionPools.Count())
	}
	d, err := c.Dial(context.Background(), h2)
	if err != nil {
		t.Fatalf("after the first pool closed: %v", err)
	}
	d.Close()
}

// TestWaitRelease: a waiter is woken by ConnectionReleased, and a release
// with nobody waiting costs nothing.
func TestWaitRelease(t *testing.T) {
	var rm ResourceManager
	rm.ConnectionReleased() // nobody waits: no-op
	ch, done := rm.WaitRelease()
	defer done()
	select {
	case <-ch:
		t.Fatal("woken before any release")
	default:
	}
	rm.ConnectionReleased()
	<-ch
}
