package listener

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/network"
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
	if !g.ignoreDrain {
		unregister := nc.OnDrain(func() {
			go func() {
				select {
				case <-done:
				default:
					io.WriteString(nc, "bye\n")
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
		if _, err := io.WriteString(nc, g.name+"\n"); err != nil {
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
