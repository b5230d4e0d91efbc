package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/herald-proxy/herald/internal/testutil"
)

// certFiles writes a self-signed certificate and key for 127.0.0.1 and
// returns their paths.
func certFiles(t *testing.T) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, k.Public(), k)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(key, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// quicListener is a QUIC (UDP) listener answering direct_response body on
// port.
func quicListener(name, port, body, cert, key string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { protocol: UDP, address: 127.0.0.1, port_value: %s } }
    udp_listener_config: { quic_options: {} }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.quic
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport
          downstream_tls_context:
            common_tls_context:
              tls_certificates: [ { certificate_chain: { filename: %q }, private_key: { filename: %q } } ]
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          codec_type: HTTP3
          route_config: { virtual_hosts: [ { name: v, domains: ["*"], routes: [ { match: { prefix: "/" }, direct_response: { status: 200, body: { inline_string: %q } } } ] } ] }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
`, name, port, cert, key, body)
}

// freeTCPAndUDPPort returns a port free for both TCP and UDP on 127.0.0.1.
func freeTCPAndUDPPort(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		ln.Close()
		if err == nil {
			pc.Close()
			return strconv.Itoa(port)
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return ""
}

// A listener that changes protocol (TCP <-> QUIC), under the same name or
// as a new listener on a leaving listener's address, gets a new socket of
// the new protocol; the old socket stops accepting and drains. /listeners
// reports the UDP address of a QUIC listener.
func TestApplyListenerProtocolChange(t *testing.T) {
	cert, key := certFiles(t)
	tests := []struct {
		name        string
		from, to    func(port string) string
		wantNetwork string
		want        Changes
	}{
		{name: "same name tcp to quic",
			from:        func(p string) string { return directListener("web", p, "tcp") },
			to:          func(p string) string { return quicListener("web", p, "quic", cert, key) },
			wantNetwork: "udp", want: Changes{ListenersModified: []string{"web"}}},
		{name: "same name quic to tcp",
			from:        func(p string) string { return quicListener("web", p, "quic", cert, key) },
			to:          func(p string) string { return directListener("web", p, "tcp") },
			wantNetwork: "tcp", want: Changes{ListenersModified: []string{"web"}}},
		{name: "new quic listener on a leaving tcp listener's address",
			from:        func(p string) string { return directListener("old", p, "tcp") },
			to:          func(p string) string { return quicListener("new", p, "quic", cert, key) },
			wantNetwork: "udp", want: Changes{ListenersAdded: []string{"new"}, ListenersRemoved: []string{"old"}}},
		{name: "new tcp listener on a leaving quic listener's address",
			from:        func(p string) string { return quicListener("old", p, "quic", cert, key) },
			to:          func(p string) string { return directListener("new", p, "tcp") },
			wantNetwork: "tcp", want: Changes{ListenersAdded: []string{"new"}, ListenersRemoved: []string{"old"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			port := freeTCPAndUDPPort(t)
			s := newTestServer(t)
			if _, err := s.Apply(context.Background(), resources(t, []string{tc.from(port)}, nil), 0); err != nil {
				t.Fatal(err)
			}
			old := s.listeners()[0]
			got, err := s.Apply(context.Background(), resources(t, []string{tc.to(port)}, nil), 0)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); d != "" {
				t.Errorf("changes (-want +got):\n%s", d)
			}
			ls := s.listeners()
			if len(ls) != 1 || ls[0] == old {
				t.Fatalf("listeners %v: want one new socket, not the old %s one", ls, old.Network())
			}
			if n := ls[0].Network(); n != tc.wantNetwork {
				t.Errorf("running listener network = %q, want %q", n, tc.wantNetwork)
			}
			if n := ls[0].Config().Network; n != tc.wantNetwork && !(tc.wantNetwork == "tcp" && n == "") {
				t.Errorf("running config network = %q, want %q", n, tc.wantNetwork)
			}
			st := s.Listeners()
			if len(st) != 1 || len(st[0].Addrs) != 1 {
				t.Fatalf("Listeners() = %+v", st)
			}
			if a := st[0].Addrs[0]; a.Network() != tc.wantNetwork || a.String() != "127.0.0.1:"+port {
				t.Errorf("Listeners() address = %s %s, want %s 127.0.0.1:%s", a.Network(), a, tc.wantNetwork, port)
			}
			// The old socket no longer accepts: its drain has begun.
			testutil.Eventually(t, 5*time.Second, func() error {
				if !old.Draining() {
					return fmt.Errorf("old %s listener not draining", old.Network())
				}
				return nil
			})
		})
	}
}
