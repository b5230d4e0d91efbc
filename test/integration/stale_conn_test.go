package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil"
)

// closingBackend answers one request per connection with a keep-alive
// response, then closes the connection without saying so: every pooled
// connection herald keeps to it is stale by the next request.
func closingBackend(t *testing.T) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	conns = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			conns.Add(1)
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if strings.TrimSpace(line) == "" {
						break
					}
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}()
		}
	}()
	return ln.Addr().String(), conns
}

// TestStaleKeepAliveConnectionIsRetried: a headers-only request that meets
// a pooled connection the upstream already closed is sent again on a new
// connection instead of failing with 503.
func TestStaleKeepAliveConnectionIsRetried(t *testing.T) {
	t.Parallel()
	backend, conns := closingBackend(t)
	h := testutil.Start(t, catchAllConfig("l", "b", staticCluster("b", backend), ""))
	base := "http://" + h.ListenerAddr("l")
	c := newClient()
	for i := 0; i < 10; i++ {
		code, _, body := get(t, c, base+fmt.Sprintf("/%d", i), "")
		if code != 200 || body != "ok" {
			t.Fatalf("request %d: %d %q, want 200 ok", i, code, body)
		}
	}
	if n := conns.Load(); n < 10 {
		t.Fatalf("backend saw %d connections for 10 requests; want one per request", n)
	}
}
