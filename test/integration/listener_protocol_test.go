package integration

import (
	"crypto/tls"
	"fmt"
	"net"
	nethttp "net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"

	"github.com/herald-proxy/herald/internal/testutil"
)

// freeDualPort returns a port of 127.0.0.1 that is free for both TCP and
// UDP.
func freeDualPort(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+port)
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return ""
}

// onPort binds a listener rendered with port_value 0 to port.
func onPort(listenerYAML, port string) string {
	return strings.Replace(listenerYAML, "port_value: 0 }", "port_value: "+port+" }", 1)
}

// listenerStatus is one entry of /listeners?format=json.
type listenerStatus struct {
	Name         string `json:"name"`
	LocalAddress struct {
		SocketAddress struct {
			Protocol  string `json:"protocol"`
			Address   string `json:"address"`
			PortValue int    `json:"port_value"`
		} `json:"socket_address"`
	} `json:"local_address"`
}

func adminListener(t *testing.T, h *testutil.Herald, name string) listenerStatus {
	t.Helper()
	var out struct {
		ListenerStatuses []listenerStatus `json:"listener_statuses"`
	}
	h.AdminJSON("/listeners?format=json", &out)
	for _, l := range out.ListenerStatuses {
		if l.Name == name {
			return l
		}
	}
	t.Fatalf("listener %q not in /listeners: %+v", name, out)
	return listenerStatus{}
}

// TestReloadListenerProtocolChange: a SIGHUP reload turns the TCP listener
// "web" into a QUIC listener "web" on the same address, and back. Envoy
// reuses a listener's socket only for a compatible address (same address
// and socket type); otherwise the updated listener binds a new socket and
// the old one drains (ListenerManagerImpl::setupSocketFactoryForListener,
// https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/lds).
// /listeners reports the QUIC listener's address as UDP, as Envoy does.
func TestReloadListenerProtocolChange(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {}))
	port := freeDualPort(t)
	addr := "127.0.0.1:" + port
	tcpCfg := bootstrap([]string{onPort(tcpListenerYAML("web"), port)}, staticCluster("backend", backend))
	quicCfg := bootstrap([]string{onPort(quicListenerYAML(f, "web"), port)}, staticCluster("backend", backend))
	h := testutil.Start(t, tcpCfg)

	h1 := &nethttp.Transport{DisableCompression: true}
	t.Cleanup(h1.CloseIdleConnections)
	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: f.roots, ServerName: "example.com"}, DisableCompression: true}
	t.Cleanup(func() { h3.Close() })

	if ex := doRequest(t, h1, "GET", "http://"+addr+"/direct", nil); ex.status != 200 || ex.body != "direct answer" {
		t.Fatalf("TCP listener before reload: %d %q", ex.status, ex.body)
	}
	if got := adminListener(t, h, "web").LocalAddress.SocketAddress; got.Protocol != "" && got.Protocol != "TCP" {
		t.Errorf("TCP listener reported with protocol %q", got.Protocol)
	}

	// TCP -> QUIC.
	rewrite(t, h, quicCfg)
	if st := sighup(t, h); !st.OK {
		t.Fatalf("reload TCP -> QUIC rejected: %+v", st)
	}
	sa := adminListener(t, h, "web").LocalAddress.SocketAddress
	if sa.Protocol != "UDP" || sa.Address != "127.0.0.1" || strconv.Itoa(sa.PortValue) != port {
		t.Errorf("/listeners?format=json web = %+v, want UDP 127.0.0.1:%s", sa, port)
	}
	if code, body := h.Admin("GET", "/listeners"); code != 200 || !strings.Contains(body, "web::"+addr+"\n") {
		t.Errorf("/listeners text = %d %q, want a line web::%s", code, body, addr)
	}
	ex := doRequest(t, h3, "GET", "https://"+addr+"/direct", nil)
	if ex.proto != 3 || ex.status != 200 || ex.body != "direct answer" {
		t.Fatalf("QUIC listener after reload: HTTP/%d %d %q", ex.proto, ex.status, ex.body)
	}
	// The TCP socket was stopped, not handed to the QUIC listener.
	testutil.Eventually(t, 5*time.Second, func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("old TCP socket of web still accepts on %s", addr)
		}
		return nil
	})
	waitStat(t, h, "listener_manager.listener_modified", 1)
	waitStat(t, h, "listener_manager.total_listeners_active", 1)

	// QUIC -> TCP.
	h3.Close()
	rewrite(t, h, tcpCfg)
	if st := sighup(t, h); !st.OK {
		t.Fatalf("reload QUIC -> TCP rejected: %+v", st)
	}
	if sa := adminListener(t, h, "web").LocalAddress.SocketAddress; sa.Protocol == "UDP" || strconv.Itoa(sa.PortValue) != port {
		t.Errorf("/listeners?format=json web after QUIC -> TCP = %+v, want TCP 127.0.0.1:%s", sa, port)
	}
	if ex := doRequest(t, h1, "GET", "http://"+addr+"/direct", nil); ex.status != 200 || ex.body != "direct answer" {
		t.Fatalf("TCP listener after reload: %d %q", ex.status, ex.body)
	}
	waitStat(t, h, "listener_manager.listener_modified", 2)
}
