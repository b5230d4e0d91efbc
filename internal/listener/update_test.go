package listener

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

// greeter is a terminal that writes its name on every line it reads and,
// when the listener drains, writes "bye" and closes (what a draining HTTP
// connection does at its next chance). With ignoreDrain it keeps the
// connection until the peer or the listener closes it (a tcp_proxy
// tunnel).
type greeter struct {
	name        string
	ignoreDrain bool
}

// ServeConn implements netfilter.Terminal.
func (g *greeter) ServeConn(nc *network.Conn) {
	done := make(chan struct{})
	defer close(done)
	// The drain callback writes from another goroutine; sockio conns take
	// one writer at a time.
	var wmu sync.Mutex
	write := func(s string) error {
		wmu.Lock()
		defer wmu.Unlock()
		_, err := io.WriteString(nc, s)
		return err
	}
	if !g.ignoreDrain {
		unregister := nc.OnDrain(func() {
			go func() {
				select {
				case <-done:
				default:
					write("bye\n")
					nc.Close()
				}
			}()
		})
		defer unregister()
	}
	r := bufio.NewReader(nc)
	for {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		if err := write(g.name + "\n"); err != nil {
			return
		}
	}
}

func configNamed(name string, ignoreDrain bool) *Config {
	return &Config{
		Name:    name,
		Network: "tcp",
		Address: "127.0.0.1:0",
		Chains:  []*FilterChain{{Name: name, Terminal: &greeter{name: name, ignoreDrain: ignoreDrain}}},
	}
}

type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, l *Listener) *client {
	t.Helper()
	c, err := net.Dial("tcp", l.Bound().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// ask sends a line and returns the answer line ("" when the connection
// closed).
func (c *client) ask() string {
	c.t.Helper()
	io.WriteString(c.c, "hi\n")
	return c.read()
}

func (c *client) read() string {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("no answer: %v", err)
		}
	}
	if len(line) > 0 {
		line = line[:len(line)-1]
	}
	return line
}

func TestUpdate(t *testing.T) {
	tests := []struct {
		name        string
		ignoreDrain bool
		drainTime   time.Duration
		// wantOld is what the old connection sees after the update.
		wantOld string
	}{
		// A connection that honours drain ends itself.
		{name: "old connection drains", drainTime: time.Minute, wantOld: "bye"},
		// A connection that ignores drain is closed after drainTime.
		{name: "old connection closed after drain time", ignoreDrain: true, drainTime: 50 * time.Millisecond, wantOld: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l, err := Start(ctx, configNamed("v1", tc.ignoreDrain), stats.NewStore())
			if err != nil {
				t.Fatal(err)
			}
			defer l.CloseAll()
			bound := l.Bound()
			old := dial(t, l)
			if got := old.ask(); got != "v1" {
				t.Fatalf("before update: got %q, want v1", got)
			}

			done := l.Update(configNamed("v2", tc.ignoreDrain), tc.drainTime)
			if l.Bound() != bound || l.Name() != "v2" {
				t.Fatalf("after update: bound %v name %q, want %v v2", l.Bound(), l.Name(), bound)
			}
			if got := dial(t, l).ask(); got != "v2" {
				t.Errorf("new connection: got %q, want v2", got)
			}
			if got := old.read(); got != tc.wantOld {
				t.Errorf("old connection: got %q, want %q", got, tc.wantOld)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("the old config's connections never ended")
			}
			if got := dial(t, l).ask(); got != "v2" {
				t.Errorf("connection after the drain: got %q, want v2", got)
			}
		})
	}
}

func TestRemove(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, configNamed("v1", false), stats.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	defer l.CloseAll()
	c := dial(t, l)
	if got := c.ask(); got != "v1" {
		t.Fatalf("got %q", got)
	}
	done := l.Remove(time.Minute)
	if got := c.read(); got != "bye" {
		t.Errorf("open connection of a removed listener: got %q, want bye", got)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Remove never finished")
	}
	if nc, err := net.Dial("tcp", l.Bound().String()); err == nil {
		nc.Close()
		t.Error("a removed listener still accepts")
	}
}

func TestBindThenClose(t *testing.T) {
	// A rejected update releases the sockets it bound, and they were never
	// served.
	l, err := Bind(context.Background(), configNamed("v1", false), stats.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Bound().String()
	l.Close()
	l.Serve() // no-op after Close
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("port not released: %v", err)
	}
	ln.Close()
}

// firstByte is a listener filter that sets the connection's transport
// protocol to the first byte the client sends, so that a test picks a
// filter chain per connection ("a..." → chain matching "a").
type firstByte struct{}

// MaxReadBytes implements listenerfilter.Filter.
func (firstByte) MaxReadBytes() int { return 1 }

// OnData implements listenerfilter.Filter.
func (firstByte) OnData(c *network.Conn, data []byte) listenerfilter.Status {
	if len(data) == 0 {
		return listenerfilter.NeedMoreData
	}
	c.TransportProtocol = string(data[:1])
	return listenerfilter.Continue
}

var _ listenerfilter.Filter = firstByte{}

// chainsConfig is a listener whose chains are picked by a connection's
// first byte: names[i] is the chain for byte 'a'+i, answering with its
// name.
func chainsConfig(t *testing.T, ignoreDrain bool, names ...string) *Config {
	t.Helper()
	cfg := &Config{Name: "l", Network: "tcp", Address: "127.0.0.1:0", ListenerFilters: []listenerfilter.Filter{firstByte{}}}
	var matches []ChainMatch
	for i, n := range names {
		cfg.Chains = append(cfg.Chains, &FilterChain{Name: n, Terminal: &greeter{name: n, ignoreDrain: ignoreDrain}})
		matches = append(matches, ChainMatch{TransportProtocol: string(rune('a' + i))})
	}
	m, err := NewChainMatcher(cfg.Chains, matches, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Matcher = m
	return cfg
}

// askOn sends a line starting with the chain's byte and returns the
// answer.
func (c *client) askOn(chain byte) string {
	c.t.Helper()
	io.WriteString(c.c, string(chain)+"\n")
	return c.read()
}

func waitDone(t *testing.T, done <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: the drained chains' connections never ended", what)
	}
}

func TestUpdateFilterChains(t *testing.T) {
	tests := []struct {
		name        string
		ignoreDrain bool
		drainTime   time.Duration
		// wantChanged is what the connection on the changed chain sees
		// after the update.
		wantChanged string
	}{
		// A connection that honours drain ends itself.
		{name: "changed chain drains", drainTime: time.Minute, wantChanged: "bye"},
		// A connection that ignores drain (a tcp_proxy tunnel) is closed
		// after the drain time; the unchanged chain's connection is not.
		{name: "changed chain closed after drain time", ignoreDrain: true, drainTime: 50 * time.Millisecond, wantChanged: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			l, err := Start(ctx, chainsConfig(t, tc.ignoreDrain, "a1", "b1"), stats.NewStore())
			if err != nil {
				t.Fatal(err)
			}
			defer l.CloseAll()
			bound := l.Bound()
			onA, onB := dial(t, l), dial(t, l)
			if got := onA.askOn('a'); got != "a1" {
				t.Fatalf("chain a before the update: got %q, want a1", got)
			}
			if got := onB.askOn('b'); got != "b1" {
				t.Fatalf("chain b before the update: got %q, want b1", got)
			}

			// Chain a is unchanged (it continues chain 0), chain b changed.
			done, n := l.UpdateFilterChains(chainsConfig(t, tc.ignoreDrain, "a2", "b2"), []int{0, -1}, tc.drainTime)
			if n != 1 {
				t.Errorf("draining chains: got %d, want 1", n)
			}
			if l.Bound() != bound {
				t.Fatalf("socket changed: %v, want %v", l.Bound(), bound)
			}
			if got := onB.read(); got != tc.wantChanged {
				t.Errorf("connection on the changed chain: got %q, want %q", got, tc.wantChanged)
			}
			waitDone(t, done, "update")
			// The kept chain's connection outlived the drain, and new
			// connections on it run on the chain built first (Envoy keeps
			// the FilterChainImpl of an identical chain).
			if got := onA.askOn('a'); got != "a1" {
				t.Errorf("connection on the unchanged chain: got %q, want a1", got)
			}
			if got := dial(t, l).askOn('a'); got != "a1" {
				t.Errorf("new connection on the unchanged chain: got %q, want a1", got)
			}
			if got := dial(t, l).askOn('b'); got != "b2" {
				t.Errorf("new connection on the changed chain: got %q, want b2", got)
			}
			if l.ActiveConnections() < 1 || l.Draining() {
				t.Errorf("after the update: %d connections, draining %v", l.ActiveConnections(), l.Draining())
			}

			// A later update that changes chain a drains the connection
			// accepted two configs ago.
			done, n = l.UpdateFilterChains(chainsConfig(t, tc.ignoreDrain, "a3", "b2"), []int{-1, 1}, tc.drainTime)
			if n != 1 {
				t.Errorf("second update, draining chains: got %d, want 1", n)
			}
			if got := onA.read(); got != tc.wantChanged {
				t.Errorf("connection on chain a after it changed: got %q, want %q", got, tc.wantChanged)
			}
			waitDone(t, done, "second update")
			if got := dial(t, l).askOn('a'); got != "a3" {
				t.Errorf("new connection on chain a: got %q, want a3", got)
			}
		})
	}
}

func TestUpdateFilterChainsThenFullUpdateAndRemove(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l, err := Start(ctx, chainsConfig(t, false, "a1", "b1"), stats.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	defer l.CloseAll()
	onA := dial(t, l)
	if got := onA.askOn('a'); got != "a1" {
		t.Fatalf("got %q, want a1", got)
	}
	// Nothing changed on chain a, chain b changed.
	done, _ := l.UpdateFilterChains(chainsConfig(t, false, "a1", "b2"), []int{0, -1}, time.Minute)
	waitDone(t, done, "in-place update")
	onA2 := dial(t, l)
	if got := onA2.askOn('a'); got != "a1" {
		t.Fatalf("got %q, want a1", got)
	}

	// A full update drains every connection of the running chains, also
	// the one accepted before the in-place update.
	done = l.Update(chainsConfig(t, false, "a3", "b3"), time.Minute)
	for i, c := range []*client{onA, onA2} {
		if got := c.read(); got != "bye" {
			t.Errorf("connection %d after a full update: got %q, want bye", i, got)
		}
	}
	waitDone(t, done, "full update")
	onA3 := dial(t, l)
	if got := onA3.askOn('a'); got != "a3" {
		t.Fatalf("got %q, want a3", got)
	}
	done = l.Remove(time.Minute)
	if got := onA3.read(); got != "bye" {
		t.Errorf("connection of a removed listener: got %q, want bye", got)
	}
	waitDone(t, done, "remove")
}

func TestCheckKeep(t *testing.T) {
	tests := []struct {
		name       string
		keep       []int
		newN, oldN int
		wantErr    bool
	}{
		{name: "valid", keep: []int{1, -1, 0}, newN: 3, oldN: 2},
		{name: "all new", keep: []int{-1, -1}, newN: 2, oldN: 0},
		{name: "too few entries", keep: []int{0}, newN: 2, oldN: 2, wantErr: true},
		{name: "out of range", keep: []int{2}, newN: 1, oldN: 2, wantErr: true},
		{name: "below -1", keep: []int{-2}, newN: 1, oldN: 2, wantErr: true},
		// One running chain cannot continue as two new chains.
		{name: "kept twice", keep: []int{0, 0}, newN: 2, oldN: 2, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkKeep(tc.keep, tc.newN, tc.oldN)
			if (err != nil) != tc.wantErr {
				t.Errorf("checkKeep(%v, %d, %d) = %v, want error %v", tc.keep, tc.newN, tc.oldN, err, tc.wantErr)
			}
		})
	}
}

// waitActive polls until l counts n open connections.
func waitActive(t *testing.T, l *Listener, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.ActiveConnections() != n {
		if time.Now().After(deadline) {
			t.Fatalf("active connections: got %d, want %d", l.ActiveConnections(), n)
		}
		runtime.Gosched()
	}
}

// TestUpdateWhileInListenerFilters covers a connection accepted before an
// update and still in its listener filters when the update runs.
func TestUpdateWhileInListenerFilters(t *testing.T) {
	t.Run("full update: old chain, closed after the drain time", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		l, err := Start(ctx, chainsConfig(t, true, "a1", "b1"), stats.NewStore())
		if err != nil {
			t.Fatal(err)
		}
		defer l.CloseAll()
		c := dial(t, l)
		waitActive(t, l, 1)
		// Envoy drains the whole old listener, whose sockets still in
		// their listener filters go on with its config.
		done := l.Update(chainsConfig(t, true, "a2", "b2"), time.Second)
		if got := c.askOn('a'); got != "a1" {
			t.Fatalf("connection accepted before the full update: got %q, want a1", got)
		}
		select {
		case <-done:
			t.Error("update done while a connection still runs on a drained chain")
		default:
		}
		// It ignores drain (a tunnel): the drain time closes it.
		if got := c.read(); got != "" {
			t.Errorf("after the drain time: got %q, want the connection closed", got)
		}
		waitDone(t, done, "full update")
	})
	t.Run("in-place update: the new config picks the chain", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		l, err := Start(ctx, chainsConfig(t, false, "a1", "b1"), stats.NewStore())
		if err != nil {
			t.Fatal(err)
		}
		defer l.CloseAll()
		onA, onB := dial(t, l), dial(t, l)
		waitActive(t, l, 2)
		done, _ := l.UpdateFilterChains(chainsConfig(t, false, "a1", "b2"), []int{0, -1}, time.Minute)
		// Envoy's ActiveTcpSocket matches a chain of the listener's
		// config when its listener filters are done, and an in-place
		// update has replaced that config.
		if got := onB.askOn('b'); got != "b2" {
			t.Errorf("connection in its listener filters during the update, changed chain: got %q, want b2", got)
		}
		if got := onA.askOn('a'); got != "a1" {
			t.Errorf("connection in its listener filters during the update, kept chain: got %q, want a1", got)
		}
		waitDone(t, done, "in-place update")
		if got := onB.askOn('b'); got != "b2" {
			t.Errorf("second line on the changed chain: got %q, want b2", got)
		}
	})
}
