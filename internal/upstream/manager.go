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
	"github.com/herald-proxy/herald/internal/secret"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/xds"
)

// Manager is the cluster manager. It outlives config snapshots: clusters
// whose config did not change keep their hosts, pools and DNS workers across
// Apply calls.
type Manager struct {
	store *stats.Store
	env   buildEnv

	// Read on the request path without locks: an immutable map.
	clusters atomic.Pointer[map[string]*Cluster]
	// addedViaAPI answers admin /clusters' added_via_api.
	addedViaAPI atomic.Pointer[func(name string) bool]

	// Guarded by mu (Apply, Close, Warnings):
	mu       sync.Mutex
	warnings configerr.List
	ctx      context.Context
	cancel   context.CancelFunc
	closed   bool

	// Envoy's cluster_manager.* stats.
	clusterAdded, clusterModified, clusterRemoved *stats.Counter
	activeClusters                                *stats.Gauge
	// warming is cluster_manager.warming_clusters.
	warming *stats.Gauge
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

// WithXDS gives EDS clusters the server's xDS client.
func WithXDS(c *xds.Client) Option { return func(m *Manager) { m.env.xds = c } }

// WithSecrets gives transport sockets the server's secret manager (static
// secrets and SDS).
func WithSecrets(s *secret.Manager) Option { return func(m *Manager) { m.env.secrets = s } }

// SetAddedViaAPI sets how admin /clusters learns whether a cluster came
// from CDS (added_via_api); nil means none did. f is called from admin
// requests, concurrently with updates.
func (m *Manager) SetAddedViaAPI(f func(name string) bool) { m.addedViaAPI.Store(&f) }

func (m *Manager) isAddedViaAPI(name string) bool {
	f := m.addedViaAPI.Load()
	return f != nil && *f != nil && (*f)(name)
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
		warming:         store.Gauge("cluster_manager.warming_clusters"),
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

// Apply makes clusters the running set at once, without waiting for new
// or changed clusters to warm: Prepare then Commit(ctx, 0). It builds every
// new or changed cluster first; if any fails, it returns all errors (a
// configerr.List of FieldErrors at pathPrefix(i)+"...") and nothing changes.
// Otherwise it swaps the set in: unchanged clusters (proto.Equal) keep their
// Cluster object, new and changed ones start their discovery, removed and
// replaced ones stop theirs and close their idle connections.
//
// pathPrefix(i) is the YAML path of clusters[i], e.g.
// "static_resources.clusters[2]". Discovery workers run until the cluster
// is removed or Close is called, not until ctx ends: ctx only bounds Apply.
func (m *Manager) Apply(ctx context.Context, clusters []*clusterv3.Cluster, pathPrefix func(i int) string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	u, err := m.Prepare(clusters, pathPrefix)
	if err != nil {
		return err
	}
	return u.Commit(ctx, 0)
}

// ClusterUpdate is a validated set of clusters that is not running yet
// (Prepare); Commit starts it, or it is dropped with nothing to undo.
type ClusterUpdate struct {
	m     *Manager
	base  *map[string]*Cluster // the running set it was diffed against
	next  map[string]*Cluster
	fresh []*Cluster // new and changed clusters, built, not started
	warns configerr.List
}

// ErrConflict is returned by Commit when the running set changed since
// Prepare; prepare again.
var ErrConflict = errors.New("upstream: cluster set changed since Prepare")

// Prepare builds every new or changed cluster of clusters against the
// running set and returns the update without starting anything; if any
// cluster fails, it returns all errors (a configerr.List at
// pathPrefix(i)+"...").
func (m *Manager) Prepare(clusters []*clusterv3.Cluster, pathPrefix func(i int) string) (*ClusterUpdate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	base := m.clusters.Load()
	old := *base
	u := &ClusterUpdate{m: m, base: base, next: make(map[string]*Cluster, len(clusters))}
	var errs configerr.List
	seen := map[string]string{}
	for i, cfg := range clusters {
		path := pathPrefix(i)
		if first, dup := seen[cfg.GetName()]; dup && cfg.GetName() != "" {
			errs = append(errs, configerr.At(path+".name", "duplicate cluster name %q (first at %s)", cfg.GetName(), first))
			continue
		}
		seen[cfg.GetName()] = path
		if prev := old[cfg.GetName()]; prev != nil && proto.Equal(prev.cfg, cfg) {
			u.next[cfg.GetName()] = prev
			u.warns = append(u.warns, clusterWarnings(cfg, path)...)
			continue
		}
		c, cerrs, w := buildCluster(cfg, path, m.env)
		u.warns = append(u.warns, w...)
		if len(cerrs) > 0 {
			errs = append(errs, cerrs...)
			continue
		}
		u.next[c.name] = c
		u.fresh = append(u.fresh, c)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return u, nil
}

// Changes returns the names of the clusters Commit adds, modifies and
// removes, each sorted.
func (u *ClusterUpdate) Changes() (added, modified, removed []string) {
	old := *u.base
	for _, c := range u.fresh {
		if old[c.name] != nil {
			modified = append(modified, c.name)
		} else {
			added = append(added, c.name)
		}
	}
	for name := range old {
		if u.next[name] == nil {
			removed = append(removed, name)
		}
	}
	sort.Strings(added)
	sort.Strings(modified)
	sort.Strings(removed)
	return added, modified, removed
}

// Commit starts the new and changed clusters, waits up to warm for each to
// be Ready (initial discovery and, with health_checks, the first round of
// checks), then swaps the set in; removed and replaced clusters stop. While
// a changed cluster warms, the old one keeps serving. Envoy: "when a
// cluster is added or updated ... [it] will not be used until it has
// warmed", and a cluster whose warming hits initial_fetch_timeout is used
// with what it has
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/upstream/cluster_manager#cluster-warming);
// herald does the same when warm runs out. warm 0 swaps at once (startup,
// which waits with WaitReady before opening listeners).
//
// If ctx ends or the manager closes while warming, the started clusters
// stop and nothing changes. Commit returns ErrConflict when another update
// committed since Prepare.
func (u *ClusterUpdate) Commit(ctx context.Context, warm time.Duration) error {
	m := u.m
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	if m.clusters.Load() != u.base {
		m.mu.Unlock()
		return ErrConflict
	}
	for _, c := range u.fresh {
		c.start(m.ctx)
	}
	m.mu.Unlock()

	if warm > 0 && len(u.fresh) > 0 {
		if err := u.warm(ctx, warm); err != nil {
			for _, c := range u.fresh {
				c.stop()
			}
			return err
		}
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.clusters.Load() != u.base {
		for _, c := range u.fresh {
			c.stop()
		}
		if m.closed {
			return ErrClosed
		}
		return ErrConflict
	}
	old := *u.base
	next := u.next
	m.clusters.Store(&next)
	m.warnings = u.warns
	for _, w := range u.warns {
		slog.Warn("cluster config ignored", "path", w.Path, "warning", w.Msg)
	}
	for _, c := range u.fresh {
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

// warm waits until every fresh cluster is Ready or warm has passed (then
// it logs which are still warming and returns nil); it fails only when ctx
// ends or the manager closes.
func (u *ClusterUpdate) warm(ctx context.Context, warm time.Duration) error {
	m := u.m
	m.warming.Add(int64(len(u.fresh)))
	defer m.warming.Add(-int64(len(u.fresh)))
	t := time.NewTimer(warm)
	defer t.Stop()
	for _, c := range u.fresh {
		select {
		case <-c.ready:
		case <-t.C:
			slog.Warn("cluster warming timed out; using it as it is", "cluster", c.name, "timeout", warm)
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-m.ctx.Done():
			return ErrClosed
		}
	}
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

// Warnings returns what the last successful Apply accepted but ignores,
// each at its field path (nothing today; the mechanism stays for fields
// accepted for compatibility).
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
