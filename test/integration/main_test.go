// Package integration runs the real herald binary on loopback against real
// backends started by each test.
package integration

import (
	"fmt"
	"io"
	"net"
	nethttp "net/http"
	"strings"
	"testing"
	"time"
)

// httpClient never reuses connections across tests and fails fast.
func newClient() *nethttp.Client {
	return &nethttp.Client{
		Timeout: 10 * time.Second,
		Transport: &nethttp.Transport{
			DisableCompression:  true,
			MaxIdleConnsPerHost: 4,
		},
		CheckRedirect: func(*nethttp.Request, []*nethttp.Request) error { return nethttp.ErrUseLastResponse },
	}
}

// get issues a GET with an optional Host and returns status, headers, body.
func get(t *testing.T, c *nethttp.Client, url, host string) (int, nethttp.Header, string) {
	t.Helper()
	req, err := nethttp.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s body: %v", url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// rawRequest writes raw bytes to addr and returns everything read until
// the server closes or 5 s pass.
func rawRequest(t *testing.T, addr, req string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	return string(b)
}

// staticCluster renders a STATIC cluster with the given endpoints.
func staticCluster(name string, addrs ...string) string {
	var eps strings.Builder
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		fmt.Fprintf(&eps, "        - endpoint: { address: { socket_address: { address: %q, port_value: %s } } }\n", host, port)
	}
	return fmt.Sprintf(`  - name: %s
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: %s
      endpoints:
      - lb_endpoints:
%s`, name, name, eps.String())
}

const adminBlock = `admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
`

// httpHandler answers every request with body.
func httpHandler(body string) nethttp.Handler {
	return nethttp.HandlerFunc(func(w nethttp.ResponseWriter, _ *nethttp.Request) { io.WriteString(w, body) })
}
