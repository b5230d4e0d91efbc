package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

// Manager is the cluster manager. It outlives config snapshots: clusters
// whose config did not change keep their hosts, pools and DNS workers across
// Apply calls.
type Manager struct {
	store *stats.Store
	env   buildEnv

	// Read on the request path without locks: an immutable map.
	clusters atomic.Pointer[map[string]*Cluster]

	// Guarded by mu (Apply, Close, Warnings):
	mu       sync.Mutex
	warnings configerr.List
	ctx      context.Context
	cancel   context.CancelFunc
	closed   bool

	// Envoy's cluster_manager.* stats.
	clusterAdded, clusterModified, clusterRemoved *stats.Counter
	activeClusters                                *stats.Gauge
}

// Option configures a Manager.
type Option func(*Manager)

// WithResolver sets the DNS resolver (default net.DefaultResolver).
func WithResolver(r clustertype.Resolver) Option { return func(m *Manager) { m.env.resolver = r } }

// WithDialer sets how connections are opened (default a net.Dialer).
func WithDialer(d DialFunc) Option { return func(m *Manager) { m.env.dial = d } }

// WithClock sets the clock used for idle timeouts and connect times.
func WithClock(now func() time.Time) Option { return func(m *Manager) { m.env.now = now } }

// WithRand sets the random source for load balancer seeds and DNS jitter;
// tests pass a constant to make picks deterministic.
func WithRand(r func() uint64) Option {
	return func(m *Manager) { m.env.seed, m.env.rand = r, r }
}

// NewManager returns a manager with no clusters.
func NewManager(store *stats.Store, opts ...Option) *Manager {
	m := &Manager{
		store: store,
		env: buildEnv{
			store:    store,
			resolver: net.DefaultResolver,
			dial:     defaultDial(),
			now:      time.Now,
			seed:     rand.Uint64,
			rand:     rand.Uint64,
		},
		clusterAdded:    store.Counter("cluster_manager.cluster_added"),
		clusterModified: store.Counter("cluster_manager.cluster_modified"),
		clusterRemoved:  store.Counter("cluster_manager.cluster_removed"),
		activeClusters:  store.Gauge("cluster_manager.active_clusters"),
	}
	for _, o := range opts {
		o(m)
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	empty := map[string]*Cluster{}
	m.clusters.Store(&empty)
	return m
}

// ErrClosed is returned by Apply after Close.
var ErrClosed = errors.New("upstream: cluster manager closed")

// Apply makes clusters the running set. It builds every new or changed
// cluster first; if any fails, it returns all errors (a configerr.List of
// FieldErrors at pathPrefix(i)+"...") and nothing changes. Otherwise it
// swaps the set in: unchanged clusters (proto.Equal) keep their Cluster
// object, new and changed ones start their discovery, removed and replaced
// ones stop theirs and close their idle connections.
//
// pathPrefix(i) is the YAML path of clusters[i], e.g.
// "static_resources.clusters[2]". Discovery workers run until the cluster
// is removed or Close is called, not until ctx ends: ctx only bounds Apply.
func (m *Manager) Apply(ctx context.Context, clusters []*clusterv3.Cluster, pathPrefix func(i int) string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	old := *m.clusters.Load()
	next := make(map[string]*Cluster, len(clusters))
	var fresh []*Cluster
	var errs, warns configerr.List
	seen := map[string]string{}
	for i, cfg := range clusters {
		path := pathPrefix(i)
		if first, dup := seen[cfg.GetName()]; dup && cfg.GetName() != "" {
			errs = append(errs, configerr.At(path+".name", "duplicate cluster name %q (first at %s)", cfg.GetName(), first))
			continue
		}
		seen[cfg.GetName()] = path
		if prev := old[cfg.GetName()]; prev != nil && proto.Equal(prev.cfg, cfg) {
			next[cfg.GetName()] = prev
			warns = append(warns, clusterWarnings(cfg, path)...)
			continue
		}
		c, cerrs, w := buildCluster(cfg, path, m.env)
		warns = append(warns, w...)
		if len(cerrs) > 0 {
			errs = append(errs, cerrs...)
			continue
		}
		next[c.name] = c
		fresh = append(fresh, c)
	}
	if err := errs.Err(); err != nil {
		return err
	}

	for _, c := range fresh {
		c.start(m.ctx)
	}
	m.clusters.Store(&next)
	m.warnings = warns
	for _, w := range warns {
		slog.Warn("cluster config ignored", "path", w.Path, "warning", w.Msg)
	}
	for _, c := range fresh {
		if old[c.name] != nil {
			m.clusterModified.Inc()
		} else {
			m.clusterAdded.Inc()
		}
	}
	for name, c := range old {
		if next[name] != c {
			if next[name] == nil {
				m.clusterRemoved.Inc()
			}
			c.stop()
		}
	}
	m.activeClusters.Set(int64(len(next)))
	return nil
}

// Cluster returns the running cluster called name, or nil. It takes no lock.
func (m *Manager) Cluster(name string) *Cluster {
	return (*m.clusters.Load())[name]
}

// Clusters returns the running clusters sorted by name.
func (m *Manager) Clusters() []*Cluster {
	cs := *m.clusters.Load()
	out := make([]*Cluster, 0, len(cs))
	for _, c := range cs {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// Warnings returns what the last successful Apply accepted but ignores
// (outlier_detection until issue #4), each at its field path.
// Apply also logs them.
func (m *Manager) Warnings() configerr.List {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append(configerr.List(nil), m.warnings...)
}

// WaitReady blocks until every running cluster finished its initial
// discovery (Envoy's cluster warming; DNS clusters resolve once), or ctx
// ends.
func (m *Manager) WaitReady(ctx context.Context) error {
	for _, c := range m.Clusters() {
		select {
		case <-c.ready:
		case <-ctx.Done():
			return fmt.Errorf("upstream: cluster %q not ready: %w", c.name, ctx.Err())
		}
	}
	return nil
}

// Close stops every cluster's discovery and closes idle connections. The
// clusters stay readable; Apply fails afterwards.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	m.cancel()
	for _, c := range *m.clusters.Load() {
		c.stop()
	}
}
