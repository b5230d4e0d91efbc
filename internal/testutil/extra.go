package testutil

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
)

// PID returns herald's process id.
func (h *Herald) PID() int { return h.cmd.Process.Pid }

// PeakRSS returns herald's peak resident set size in bytes (VmHWM from
// /proc/<pid>/status). It works only on Linux and while herald runs.
func (h *Herald) PeakRSS() (int64, error) {
	return procStatusBytes(h.PID(), "VmHWM")
}

// RSS returns herald's current resident set size in bytes (VmRSS).
func (h *Herald) RSS() (int64, error) {
	return procStatusBytes(h.PID(), "VmRSS")
}

// procStatusBytes reads one "kB" field of /proc/<pid>/status.
func procStatusBytes(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || name != field {
			continue
		}
		num := strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB"))
		kb, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", field, rest, err)
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s not in /proc/%d/status", field, pid)
}

// HTTPBackendOn starts an HTTP/1.1 server on the given loopback address
// (for example "[::1]:0") and returns its address. The error is returned,
// not fatal, so a test can skip when the address family is unavailable.
func HTTPBackendOn(t testing.TB, addr string, h nethttp.Handler) (string, error) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	s := httptest.NewUnstartedServer(h)
	s.Listener.Close()
	s.Listener = ln
	s.Start()
	t.Cleanup(s.Close)
	return ln.Addr().String(), nil
}

// NamedTCPEcho starts a TCP server on 127.0.0.1:0 that, for every
// connection, writes name followed by ':' and then echoes what it reads,
// half-closing after the peer does.
func NamedTCPEcho(t testing.TB, name string) string {
	t.Helper()
	return tcpServer(t, func(c net.Conn) {
		io.WriteString(c, name+":")
		io.Copy(c, c)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	})
}

// tcpServer accepts on 127.0.0.1:0 and runs serve per connection, closing
// the connection when serve returns.
func tcpServer(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
	return ln.Addr().String()
}
