package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/listener"
	"github.com/herald-proxy/herald/internal/snapshot"
	"github.com/herald-proxy/herald/internal/upstream"
)

// Resources is a complete set of listeners and clusters to run: the
// static_resources of a bootstrap (start-up, reload), or, later, the state
// of the world that LDS and CDS deliver. Apply diffs it against what runs.
type Resources struct {
	Listeners []*listenerv3.Listener
	Clusters  []*clusterv3.Cluster
	// ListenerPath and ClusterPath name resource i in error field paths
	// ("static_resources.listeners[2]"); nil gives "listeners[i]" and
	// "clusters[i]".
	ListenerPath func(i int) string
	ClusterPath  func(i int) string
	// Locator positions errors (file:line:col); nil when the resources do
	// not come from a file.
	Locator configerr.Locator
}

func (r *Resources) listenerPath(i int) string {
	if r.ListenerPath != nil {
		return r.ListenerPath(i)
	}
	return fmt.Sprintf("listeners[%d]", i)
}

func (r *Resources) clusterPath(i int) string {
	if r.ClusterPath != nil {
		return r.ClusterPath(i)
	}
	return fmt.Sprintf("clusters[%d]", i)
}

// Changes says what an Apply changed, by resource name, each list sorted.
type Changes struct {
	ListenersAdded, ListenersModified, ListenersRemoved []string
	ClustersAdded, ClustersModified, ClustersRemoved    []string
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return len(c.ListenersAdded)+len(c.ListenersModified)+len(c.ListenersRemoved)+
		len(c.ClustersAdded)+len(c.ClustersModified)+len(c.ClustersRemoved) == 0
}

// runningListener is one listener of the running configuration.
type runningListener struct {
	proto   *listenerv3.Listener
	l       *listener.Listener
	updated time.Time // last_updated in /config_dump
}

// listenerStep is what a plan does with one listener of the new set.
type listenerStep struct {
	proto *listenerv3.Listener
	cfg   *listener.Config // nil when unchanged
	// prev is the running listener this one replaces or keeps (nil for a
	// new socket).
	prev *runningListener
	// bound is a new socket (added listener, or an address change); nil
	// when prev's socket is kept.
	bound *listener.Listener
	// index is the listener's position in Resources.Listeners.
	index int
	// keep is set for a filter-chain-only update of prev
	// (snapshot.FilterChainOnlyChange): for each chain of cfg, the index
	// of the running chain it continues, or -1 (snapshot.DiffFilterChains).
	keep []int
}

// plan is a validated update: every new and changed listener built and its
// socket bound, every new and changed cluster built; nothing runs yet.
// commit applies it; discard releases it.
type plan struct {
	clusters *upstream.ClusterUpdate
	steps    []listenerStep     // in the new config's order
	removed  []*runningListener // not in the new set
	changes  Changes
}

// listenerKey matches a listener across updates: its name (Envoy requires
// unique names for updates), else its address.
func listenerKey(l *listenerv3.Listener) string {
	if l.GetName() != "" {
		return "name:" + l.GetName()
	}
	sa := l.GetAddress().GetSocketAddress()
	return fmt.Sprintf("addr:%s:%d", sa.GetAddress(), sa.GetPortValue())
}

// socketKey is the protocol and address of the socket cfg binds, matching
// Listener.Network and Config.Address of a running listener.
func socketKey(cfg *listener.Config) string {
	return cfg.SocketNetwork() + " " + cfg.Address
}

// fixedPort reports whether addr ("host:port") names a port, so that a
// socket bound to it can be handed to another listener with that address.
func fixedPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port != "0"
}

// prepare validates r against the running configuration and builds what
// changed: clusters first (upstream.Manager.Prepare), then every new or
// changed listener (snapshot.BuildListener); bind opens the new sockets. Any
// error leaves everything as it was and returns every problem found,
// positioned with r.Locator. Unchanged listeners (proto.Equal) are not
// rebuilt.
func (s *Server) prepare(ctx context.Context, r Resources) (*plan, error) {
	p := &plan{}
	var errs configerr.List
	cu, err := s.clusters.Prepare(r.Clusters, r.clusterPath)
	if err != nil {
		errs = append(errs, configerr.Collect(err, "clusters", r.Locator)...)
	} else {
		p.clusters = cu
		p.changes.ClustersAdded, p.changes.ClustersModified, p.changes.ClustersRemoved = cu.Changes()
	}

	s.mu.Lock()
	running := make(map[string]*runningListener, len(s.running))
	for _, rl := range s.running {
		running[listenerKey(rl.proto)] = rl
	}
	s.mu.Unlock()

	deps := snapshot.Deps{Stats: s.store, Clusters: s.clusters, Server: s, Secrets: s.secrets}
	seen := map[string]string{}
	matched := map[*runningListener]bool{}
	for i, lp := range r.Listeners {
		path := r.listenerPath(i)
		key := listenerKey(lp)
		if first, dup := seen[key]; dup {
			errs = append(errs, configerr.Collect(configerr.At(path+".name", "duplicate listener %q (first at %s)", lp.GetName(), first), path, r.Locator)...)
			continue
		}
		seen[key] = path
		step := listenerStep{proto: lp, prev: running[key], index: i}
		if step.prev != nil {
			matched[step.prev] = true
			if proto.Equal(step.prev.proto, lp) {
				p.steps = append(p.steps, step)
				continue
			}
		}
		cfg, err := snapshot.BuildListener(lp, path, deps)
		if err != nil {
			errs = append(errs, configerr.Collect(err, path, r.Locator)...)
			continue
		}
		step.cfg = cfg
		if step.prev != nil && snapshot.FilterChainOnlyChange(step.prev.proto, lp) {
			step.keep = snapshot.DiffFilterChains(step.prev.proto, lp)
		}
		p.steps = append(p.steps, step)
	}
	// A new listener whose fixed address is held by a listener that leaves
	// takes its socket over (no bind conflict, no gap): the pair is an
	// update of that socket.
	// Only a socket of the same protocol is taken over: a new QUIC (UDP)
	// listener on the address of a leaving TCP listener binds its own
	// socket, and the TCP one drains (Config.SameSocket).
	byAddr := map[string]*runningListener{}
	for _, rl := range running {
		if !matched[rl] && fixedPort(rl.l.Config().Address) {
			byAddr[rl.l.Network()+" "+rl.l.Config().Address] = rl
		}
	}
	for i := range p.steps {
		st := &p.steps[i]
		if st.prev == nil && st.cfg != nil {
			key := socketKey(st.cfg)
			if rl := byAddr[key]; rl != nil {
				st.prev = rl
				matched[rl] = true
				delete(byAddr, key)
			}
		}
	}
	for _, rl := range running {
		if !matched[rl] {
			p.removed = append(p.removed, rl)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}

	for _, st := range p.steps {
		switch {
		case st.cfg == nil:
		case st.prev == nil:
			p.changes.ListenersAdded = append(p.changes.ListenersAdded, st.proto.GetName())
		case listenerKey(st.prev.proto) != listenerKey(st.proto):
			// A socket taken over by a listener of another name: for the
			// counters (and Envoy), one listener left and one came.
			p.changes.ListenersAdded = append(p.changes.ListenersAdded, st.proto.GetName())
			p.changes.ListenersRemoved = append(p.changes.ListenersRemoved, st.prev.proto.GetName())
		default:
			p.changes.ListenersModified = append(p.changes.ListenersModified, st.proto.GetName())
		}
	}
	for _, rl := range p.removed {
		if !slices.ContainsFunc(p.steps, func(st listenerStep) bool { return st.prev == rl }) {
			p.changes.ListenersRemoved = append(p.changes.ListenersRemoved, rl.proto.GetName())
		}
	}
	slices.Sort(p.changes.ListenersAdded)
	slices.Sort(p.changes.ListenersModified)
	slices.Sort(p.changes.ListenersRemoved)
	return p, ctx.Err()
}

// bind binds every new socket of p before anything changes, so that a bind
// failure rejects the whole update (the sockets p bound are released). A
// changed listener keeps its socket only when its address and protocol are
// unchanged (Config.SameSocket); otherwise it gets a new socket here and the
// old one drains in commitListeners, as Envoy does for a listener whose
// address or socket type changed.
// Removed listeners' sockets are still open here; a new listener reusing
// their fixed address took them over in prepare.
func (s *Server) bind(p *plan, r Resources) error {
	var errs configerr.List
	for i := range p.steps {
		st := &p.steps[i]
		if st.cfg == nil || st.prev != nil && st.prev.l.Config().SameSocket(st.cfg) {
			continue
		}
		l, err := listener.Bind(s.ctx, st.cfg, s.store)
		if err != nil {
			errs = append(errs, configerr.Collect(err, r.listenerPath(st.index)+".address", r.Locator)...)
			continue
		}
		st.bound = l
	}
	if err := errs.Err(); err != nil {
		p.discard()
		return err
	}
	return nil
}

// discard releases the sockets a plan bound.
func (p *plan) discard() {
	for _, st := range p.steps {
		if st.bound != nil {
			st.bound.Close()
		}
	}
}

// commitClusters starts the plan's new and changed clusters, lets them warm
// for up to warm, and swaps the cluster set in (upstream.ClusterUpdate.Commit).
func (s *Server) commitClusters(ctx context.Context, p *plan, warm time.Duration) error {
	if p.clusters == nil {
		return nil
	}
	now := time.Now()
	if err := p.clusters.Commit(ctx, warm); err != nil {
		return err
	}
	s.mu.Lock()
	for _, n := range append(p.changes.ClustersAdded, p.changes.ClustersModified...) {
		s.clusterUpdated[n] = now
	}
	for _, n := range p.changes.ClustersRemoved {
		delete(s.clusterUpdated, n)
	}
	s.mu.Unlock()
	return nil
}

// commitListeners swaps the listener set in: unchanged listeners run on
// untouched; a listener whose filter chains alone changed is updated in
// place (listener.UpdateFilterChains: only the connections of changed or
// removed chains drain); another changed listener on the same address keeps its socket and
// takes the new config for new connections while its old connections drain
// (listener.Update); new sockets start accepting; listeners that left stop
// accepting and drain (listener.Remove). Drained connections are closed
// after --drain-time-s.
func (s *Server) commitListeners(p *plan) {
	now := time.Now()
	drain := s.drainTime()
	next := make([]*runningListener, 0, len(p.steps))
	var draining []<-chan struct{}
	var chainsDraining []drainingChains
	for _, st := range p.steps {
		switch {
		case st.cfg == nil:
			next = append(next, st.prev)
		case st.bound == nil && st.keep != nil:
			// Only filter chains changed: the listener stays, unchanged
			// chains keep their connections, changed and removed ones
			// drain (Envoy's in-place filter chain update).
			done, n := st.prev.l.UpdateFilterChains(st.cfg, st.keep, drain)
			s.lmStats.inPlaceUpdated.Inc()
			if n > 0 {
				chainsDraining = append(chainsDraining, drainingChains{done: done, n: int64(n)})
			}
			next = append(next, &runningListener{proto: st.proto, l: st.prev.l, updated: now})
			s.log.Info("listener updated in place", "name", st.cfg.Name, "address", st.prev.l.Bound().String(), "filter_chains_draining", n)
		case st.bound == nil:
			// Same address: the socket stays, the config changes.
			draining = append(draining, st.prev.l.Update(st.cfg, drain))
			next = append(next, &runningListener{proto: st.proto, l: st.prev.l, updated: now})
			s.log.Info("listener updated", "name", st.cfg.Name, "address", st.prev.l.Bound().String())
		default:
			st.bound.SetDirectory(&s.listenerDir)
			st.bound.Serve()
			next = append(next, &runningListener{proto: st.proto, l: st.bound, updated: now})
			s.log.Info("listener started", "name", st.cfg.Name, "address", st.bound.Bound().String())
			if st.prev != nil {
				// Same name, new address or protocol (TCP <-> QUIC): the
				// old socket drains.
				draining = append(draining, st.prev.l.Remove(drain))
			}
		}
	}
	for _, rl := range p.removed {
		if slices.ContainsFunc(p.steps, func(st listenerStep) bool { return st.prev == rl }) {
			continue
		}
		draining = append(draining, rl.l.Remove(drain))
		s.log.Info("listener removed", "name", rl.proto.GetName(), "address", rl.l.Bound().String())
	}
	s.mu.Lock()
	s.running = next
	s.mu.Unlock()
	ls := make([]*listener.Listener, len(next))
	for i, rl := range next {
		ls[i] = rl.l
	}
	s.listenerDir.Store(listener.NewDirectory(ls))
	s.lmStats.added.Add(uint64(len(p.changes.ListenersAdded)))
	s.lmStats.modified.Add(uint64(len(p.changes.ListenersModified)))
	s.lmStats.removed.Add(uint64(len(p.changes.ListenersRemoved)))
	s.lmStats.active.Set(int64(len(next)))
	for _, d := range draining {
		s.lmStats.draining.Inc()
		go func() {
			<-d
			s.lmStats.draining.Dec()
		}()
	}
	// Envoy keeps a drained chain in the gauge until the drain time has
	// passed; herald, as for total_listeners_draining, until its last
	// connection has ended (at the latest when the drain time closes it).
	for _, d := range chainsDraining {
		s.lmStats.chainsDraining.Add(d.n)
		go func() {
			<-d.done
			s.lmStats.chainsDraining.Add(-d.n)
		}()
	}
}

// drainingChains are the filter chains one in-place update drains.
type drainingChains struct {
	done <-chan struct{}
	n    int64
}

// errShuttingDown rejects updates once shutdown has begun.
var errShuttingDown = errors.New("server: shutting down, configuration not applied")

// Apply makes r the running configuration with Envoy's safe-update rules:
// everything is validated and built first (a bad resource rejects the whole
// update and nothing changes); new and changed clusters warm before they
// serve, for up to warm; then the listener set is swapped (see
// commitListeners). It returns what changed. Reloads and the xDS applier go
// through the same steps (applyLocked) under applyMu; Apply is the entry
// for callers that hold no lock. Concurrent calls are serialised.
func (s *Server) Apply(ctx context.Context, r Resources, warm time.Duration) (Changes, error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.applyLocked(ctx, r, warm)
}

// applyLocked is Apply with applyMu held by the caller, who composes r
// from state that must not change until the update is in (the running
// bootstrap, the accepted xDS sets).
func (s *Server) applyLocked(ctx context.Context, r Resources, warm time.Duration) (Changes, error) {
	if s.stopping.Load() {
		return Changes{}, errShuttingDown
	}
	p, err := s.prepare(ctx, r)
	if err != nil {
		return Changes{}, err
	}
	if err := s.bind(p, r); err != nil {
		return Changes{}, err
	}
	if err := s.commitClusters(ctx, p, warm); err != nil {
		p.discard()
		if errors.Is(err, upstream.ErrConflict) {
			return Changes{}, fmt.Errorf("server: clusters changed during the update, not applied: %w", err)
		}
		return Changes{}, err
	}
	s.commitListeners(p)
	return p.changes, nil
}
