package listener

import (
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
)

// generation is one config of a listener and what was built for it per
// listener. A connection is accepted under the current generation and,
// once its filter chain is matched, belongs to that chain's chainState
// until it ends.
type generation struct {
	cfg *Config
	// pending counts the connections accepted under this generation that
	// are still in their listener filters (no chain picked yet).
	pending *chainState
	// chains[i] is the state of chain index i of cfg.chains(). A
	// filter-chain-only update (UpdateFilterChains) shares the states of
	// the chains it keeps with the generation it replaces.
	chains []*chainState
	// inPlace is the generation a filter-chain-only update replaced this
	// one with (nil otherwise): a connection accepted here that is still
	// in its listener filters picks its chain there (latest).
	inPlace atomic.Pointer[generation]
}

// latest follows g's filter-chain-only successors to the newest one: the
// config a connection accepted under g matches its filter chain against
// once its listener filters are done. A full update is not followed: the
// connections of the replaced config go on with it and drain.
//
// Envoy: an in-place update replaces the config of the running
// ActiveTcpListener (updateListenerConfig), and a socket that finishes its
// listener filters looks its chain up in that listener's current config
// (ActiveTcpListener::newConnection); a full update creates a new
// listener and drains the old one with its sockets.
func (g *generation) latest() *generation {
	for n := g.inPlace.Load(); n != nil; n = g.inPlace.Load() {
		g = n
	}
	return g
}

// chainState is one filter chain as it runs on this listener: the built
// chain its connections use, its transport socket, its drain signal and
// its connections. It outlives the generation that built it when an
// in-place update keeps the chain (Envoy's DrainableFilterChain).
type chainState struct {
	// Immutable after newGeneration:
	fc    *FilterChain // nil for a generation's pending state
	sock  transportsocket.DownstreamSocket
	drain *network.Drain
	done  chan struct{} // closed once retired and every connection ended

	// Guarded by Listener.mu:
	active   int  // open connections counted here
	retired  bool // drained by an update or a removal
	finished bool // done is closed
	closed   bool // the drain time passed: connections are closed
}

func newChainState(fc *FilterChain, sock transportsocket.DownstreamSocket) *chainState {
	return &chainState{fc: fc, sock: sock, drain: network.NewDrain(), done: make(chan struct{})}
}

// newGeneration prepares cfg for this listener: chain indexes and one
// state (with its transport socket) per chain; with prev, chain i of cfg
// continues prev's chain keep[i] when keep[i] >= 0.
func (l *Listener) newGeneration(cfg *Config, prev *generation, keep []int) *generation {
	g := &generation{cfg: cfg, pending: newChainState(nil, nil)}
	for i, fc := range cfg.chains() {
		fc.index = i
		if prev != nil && keep[i] >= 0 {
			g.chains = append(g.chains, prev.chains[keep[i]])
			continue
		}
		var sock transportsocket.DownstreamSocket
		if fc.Transport != nil {
			sock = fc.Transport.ForListener(l.scope)
		}
		g.chains = append(g.chains, newChainState(fc, sock))
	}
	return g
}

// Update makes cfg the listener's config: connections accepted from now on
// use it, with no gap in accepting since the socket stays bound; the
// connections accepted under the previous config are told to drain (HTTP/1.1
// answers their next response with connection: close and closes idle ones,
// HTTP/2 sends GOAWAY) and closed when drainTime has passed. The returned
// channel is closed when the previous config's last connection has ended.
// cfg must be able to run on the bound socket (Config.SameSocket: same
// address, same protocol); Update does not rebind and panics otherwise.
//
// Envoy: "when a listener is updated, an entirely new listener is created
// (if the listener's address is unchanged, the new one uses the same listen
// socket)" and the old one drains for --drain-time-s
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/lds#config-listeners-lds).
func (l *Listener) Update(cfg *Config, drainTime time.Duration) <-chan struct{} {
	l.checkNetwork(cfg)
	g := l.newGeneration(cfg, nil, nil)
	l.mu.Lock()
	old := l.cur.Swap(g)
	l.mu.Unlock()
	return l.retire(append([]*chainState{old.pending}, old.chains...), drainTime)
}

// UpdateFilterChains is Envoy's filter-chain-only update: cfg differs from
// the running config only in its filter chains (snapshot.FilterChainOnlyChange).
// keep has one entry per chain of cfg (filter_chains in order, then
// default_filter_chain): the index, in the running config's chains, of the
// identical chain it continues, or -1 for a new or changed chain
// (snapshot.DiffFilterChains). A kept chain's connections run on untouched
// and its new connections still run on the chain built first; the running
// chains no entry keeps drain and are closed after drainTime, as a whole
// listener would. The socket is not touched. It returns a channel closed
// when the drained chains' last connection has ended and every connection
// accepted before the update has left its listener filters, and how many
// chains drain (listener_manager.total_filter_chains_draining).
//
// Envoy: "If the new filter chain and the old filter chain is protobuf
// message equivalent, the corresponding filter chain runtime info survives.
// The connections owned by the survived filter chains remain open"; "the
// connections owned by these destroying filter chains will be drained as
// described in listener drain"
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/listeners/listener_filters#filter-chain-only-update;
// ListenerManagerImpl::drainFilterChains, ListenerImpl::diffFilterChain).
func (l *Listener) UpdateFilterChains(cfg *Config, keep []int, drainTime time.Duration) (<-chan struct{}, int) {
	l.checkNetwork(cfg)
	l.mu.Lock()
	old := l.cur.Load()
	if err := checkKeep(keep, len(cfg.chains()), len(old.chains)); err != nil {
		// A caller bug, like a socket of the wrong protocol.
		l.mu.Unlock()
		panic(fmt.Sprintf("listener %s: UpdateFilterChains: %v", cfg.Name, err))
	}
	g := l.newGeneration(cfg, old, keep)
	l.cur.Store(g)
	old.inPlace.Store(g)
	kept := make([]bool, len(old.chains))
	for _, k := range keep {
		if k >= 0 {
			kept[k] = true
		}
	}
	var drained []*chainState
	for i, cs := range old.chains {
		if !kept[i] {
			drained = append(drained, cs)
		}
	}
	// Connections of the old generation still in their listener filters
	// pick a chain of the new config (generation.latest). The update is
	// done once they have, as one that races another update may still
	// land on a drained chain (join).
	drained = append(drained, old.pending)
	done := l.retireAllLocked(drained, drainTime)
	l.mu.Unlock()
	startDrains(drained)
	return done, len(drained) - 1
}

// checkKeep validates UpdateFilterChains' keep against the new and old
// chain counts: one entry per new chain, each old chain kept at most once.
func checkKeep(keep []int, newChains, oldChains int) error {
	if len(keep) != newChains {
		return fmt.Errorf("%d keep entries for %d chains", len(keep), newChains)
	}
	seen := make([]bool, oldChains)
	for i, k := range keep {
		switch {
		case k < -1 || k >= oldChains:
			return fmt.Errorf("chain %d keeps chain %d of %d", i, k, oldChains)
		case k >= 0 && seen[k]:
			return fmt.Errorf("chain %d kept twice", k)
		case k >= 0:
			seen[k] = true
		}
	}
	return nil
}

func (l *Listener) checkNetwork(cfg *Config) {
	if cfg.SocketNetwork() != l.network {
		// A caller bug: a TCP socket must never serve a QUIC config (or
		// the reverse).
		panic(fmt.Sprintf("listener %s: update from a %s socket to a %s config", cfg.Name, l.network, cfg.SocketNetwork()))
	}
}

// retire drains states and closes what is left of them after drainTime
// (never when drainTime is 0 or less: the connections end on their own).
// The returned channel is closed when every state's connections ended.
func (l *Listener) retire(states []*chainState, drainTime time.Duration) <-chan struct{} {
	l.mu.Lock()
	done := l.retireAllLocked(states, drainTime)
	l.mu.Unlock()
	startDrains(states)
	return done
}

// startDrains tells the connections of states to drain. It runs without
// l.mu: the callbacks (the connection manager's) take locks of their own.
func startDrains(states []*chainState) {
	for _, cs := range states {
		cs.drain.Start()
	}
}

func (l *Listener) retireAllLocked(states []*chainState, drainTime time.Duration) <-chan struct{} {
	if len(states) == 1 {
		return l.retireLocked(states[0], drainTime)
	}
	chans := make([]<-chan struct{}, 0, len(states))
	for _, cs := range states {
		chans = append(chans, l.retireLocked(cs, drainTime))
	}
	done := make(chan struct{})
	go func() {
		for _, c := range chans {
			<-c
		}
		close(done)
	}()
	return done
}

// retireLocked retires one state: a timer closes its connections after
// drainTime; the caller starts its drain signal once l.mu is released
// (startDrains). Retiring twice is a no-op that returns done.
func (l *Listener) retireLocked(cs *chainState, drainTime time.Duration) <-chan struct{} {
	if cs.retired {
		return cs.done
	}
	cs.retired = true
	if cs.active == 0 {
		cs.finished = true
		close(cs.done)
	}
	if drainTime > 0 && !cs.finished {
		go func() {
			t := time.NewTimer(drainTime)
			defer t.Stop()
			select {
			case <-cs.done:
			case <-l.stop:
			case <-t.C:
				l.closeState(cs)
			}
		}()
	}
	return cs.done
}

// closeState closes every open connection of cs; connections that join cs
// later (from their listener filters) are closed as they join.
func (l *Listener) closeState(cs *chainState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cs.closed = true
	for c, s := range l.conns {
		if s == cs {
			c.Close()
		}
	}
}

// join moves c from its generation's pending state to the state of the
// chain it matched. It returns nil when that chain's drain time has passed
// (the connection must close).
//
// A chain retired while c was in its listener filters may already have
// ended (done closed, no drain timer). c then stays counted in its
// pending state, retired with it: that state's drain timer closes c and
// its done waits for c.
func (l *Listener) join(c net.Conn, cs *chainState) *chainState {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cs.closed {
		return nil
	}
	if cs.finished {
		return cs
	}
	l.leaveLocked(c)
	l.conns[c] = cs
	cs.active++
	return cs
}

// leave forgets c, which has closed.
func (l *Listener) leave(c net.Conn) {
	l.mu.Lock()
	l.leaveLocked(c)
	delete(l.conns, c)
	l.mu.Unlock()
}

func (l *Listener) leaveLocked(c net.Conn) {
	cs := l.conns[c]
	if cs == nil {
		return
	}
	l.conns[c] = nil
	cs.active--
	if cs.active == 0 && cs.retired && !cs.finished {
		cs.finished = true
		close(cs.done)
	}
}

// liveStatesLocked returns the current generation's states and every
// other state that still has connections.
func (l *Listener) liveStatesLocked() []*chainState {
	cur := l.cur.Load()
	states := append([]*chainState{cur.pending}, cur.chains...)
	seen := make(map[*chainState]bool, len(states))
	for _, cs := range states {
		seen[cs] = true
	}
	for _, cs := range l.conns {
		if cs != nil && !seen[cs] {
			seen[cs] = true
			states = append(states, cs)
		}
	}
	return states
}

// Drain tells every open connection, whatever config it was accepted under,
// to finish: HTTP/1.1 closes after the current response (idle ones at
// once), HTTP/2 sends GOAWAY. Connections accepted afterwards drain too.
func (l *Listener) Drain() {
	l.mu.Lock()
	states := l.liveStatesLocked()
	l.mu.Unlock()
	for _, cs := range states {
		cs.drain.Start()
	}
}

// Remove is a listener's end in a configuration update: it stops accepting,
// drains its connections and closes what is left after drainTime
// (Envoy: "When a listener is removed, the old listener will be placed into
// a draining state ... for some period of time before the listener is
// removed and any remaining connections are closed"). The returned channel
// is closed when the last connection has ended.
func (l *Listener) Remove(drainTime time.Duration) <-chan struct{} {
	l.StopAccepting()
	l.mu.Lock()
	states := l.liveStatesLocked()
	l.mu.Unlock()
	return l.retire(states, drainTime)
}

// Draining reports whether the current config drains (Drain or Remove was
// called).
func (l *Listener) Draining() bool { return l.cur.Load().pending.drain.Draining() }
