package originaldst

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"

	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/registry"
)

func TestRegistered(t *testing.T) {
	e, ok := listenerfilter.Registry.ByTypeURL(registry.TypeURL(&originaldstv3.OriginalDst{}))
	if !ok || e.Name != Name {
		t.Fatalf("registered as %+v, %v; want %s", e, ok, Name)
	}
}

// accepted returns the server side of a loopback TCP connection on network
// ("tcp4", "tcp6" or dual-stack "tcp") and the address the client
// dialled: the listener's, or host at the listener's port when host is set.
func accepted(t *testing.T, network, addr, host string) (net.Conn, netip.AddrPort) {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("no %s loopback: %v", network, err)
	}
	defer ln.Close()
	target := ln.Addr().String()
	if host != "" {
		target = net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	cc, err := net.Dial(network, target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sc.Close() })
	return sc, cc.RemoteAddr().(*net.TCPAddr).AddrPort()
}

// TestLoopback: without NAT the original destination is the address the
// client connected to — the local address — whether the kernel reports it
// (conntrack loaded) or not (then the filter leaves the address alone).
func TestLoopback(t *testing.T) {
	tests := []struct {
		name, network, addr string
		dial                string // host to dial, else the listener's
	}{
		{name: "ipv4", network: "tcp4", addr: "127.0.0.1:0"},
		{name: "ipv6", network: "tcp6", addr: "[::1]:0"},
		// An IPv4 client of a dual-stack listener: IPv4-mapped local
		// address, so SOL_IP as in Envoy.
		{name: "ipv4 on dual-stack", network: "tcp", addr: "[::]:0", dial: "127.0.0.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc, dialled := accepted(t, tc.network, tc.addr, tc.dial)
			rc, err := sc.(*net.TCPConn).SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			if got, ok := originalDst(rc, dialled); ok && got != dialled {
				t.Errorf("SO_ORIGINAL_DST = %v, want the dialled %v", got, dialled)
			} else {
				t.Logf("SO_ORIGINAL_DST reported: %v (%v)", ok, got)
			}
			f := &Filter{originalDst: originalDst}
			c := network.NewConn(context.Background(), sc, nil)
			if st := f.OnData(c, nil); st != listenerfilter.Continue {
				t.Fatalf("OnData = %v, want Continue", st)
			}
			if c.Local != dialled {
				t.Errorf("Local = %v, want the dialled %v", c.Local, dialled)
			}
		})
	}
}

// TestRestoresOriginalDst: what the kernel reports (as after an iptables
// REDIRECT) becomes the connection's local address.
func TestRestoresOriginalDst(t *testing.T) {
	redirected := netip.MustParseAddrPort("10.0.0.7:443")
	tests := []struct {
		name   string
		report func(syscall.RawConn, netip.AddrPort) (netip.AddrPort, bool)
		want   func(local netip.AddrPort) netip.AddrPort
	}{
		{
			name:   "redirected",
			report: func(syscall.RawConn, netip.AddrPort) (netip.AddrPort, bool) { return redirected, true },
			want:   func(netip.AddrPort) netip.AddrPort { return redirected },
		},
		{
			name:   "kernel cannot tell",
			report: func(syscall.RawConn, netip.AddrPort) (netip.AddrPort, bool) { return netip.AddrPort{}, false },
			want:   func(local netip.AddrPort) netip.AddrPort { return local },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sc, _ := accepted(t, "tcp4", "127.0.0.1:0", "")
			c := network.NewConn(context.Background(), sc, nil)
			local := c.Local
			f := &Filter{originalDst: tc.report}
			if st := f.OnData(c, nil); st != listenerfilter.Continue {
				t.Fatalf("OnData = %v, want Continue", st)
			}
			if want := tc.want(local); c.Local != want {
				t.Errorf("Local = %v, want %v", c.Local, want)
			}
		})
	}
}
