package integration

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	nethttp "net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// tlsFiles is a test PKI written to a temp dir: a CA, a server certificate
// for 127.0.0.1 / example.com / *.example.com, a client certificate from
// the CA and an intruder client certificate from another CA.
type tlsFiles struct {
	dir                       string
	ca, serverCert, serverKey string // paths
	clientCert, clientKey     string
	intruderCert, intruderKey string
	roots                     *x509.CertPool
	client, intruder, server  tls.Certificate
	caCert                    *x509.Certificate
	caKey                     crypto.Signer
}

func newTLSFiles(t *testing.T) *tlsFiles {
	t.Helper()
	f := &tlsFiles{dir: t.TempDir(), roots: x509.NewCertPool()}
	var caPEM string
	f.caCert, f.caKey, caPEM, _ = genCert(t, "herald test CA", nil, nil, true, nil, nil)
	f.roots.AddCert(f.caCert)
	f.ca = f.write(t, "ca.pem", caPEM)
	_, _, sc, sk := genCert(t, "server", []string{"example.com", "*.example.com"}, []net.IP{net.IPv4(127, 0, 0, 1)}, false, f.caCert, f.caKey)
	f.serverCert, f.serverKey = f.write(t, "server.pem", sc), f.write(t, "server.key", sk)
	f.server = mustKeyPair(t, sc, sk)
	_, _, cc, ck := genCert(t, "client", []string{"client.example.com"}, nil, false, f.caCert, f.caKey)
	f.clientCert, f.clientKey = f.write(t, "client.pem", cc), f.write(t, "client.key", ck)
	f.client = mustKeyPair(t, cc, ck)
	otherCA, otherKey, _, _ := genCert(t, "other CA", nil, nil, true, nil, nil)
	_, _, ic, ik := genCert(t, "intruder", []string{"client.example.com"}, nil, false, otherCA, otherKey)
	f.intruderCert, f.intruderKey = f.write(t, "intruder.pem", ic), f.write(t, "intruder.key", ik)
	f.intruder = mustKeyPair(t, ic, ik)
	return f
}

func (f *tlsFiles) write(t *testing.T, name, data string) string {
	t.Helper()
	p := filepath.Join(f.dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// leaf issues a server certificate for names from the CA.
func (f *tlsFiles) leaf(t *testing.T, cn string, names ...string) tls.Certificate {
	t.Helper()
	_, _, c, k := genCert(t, cn, names, []net.IP{net.IPv4(127, 0, 0, 1)}, false, f.caCert, f.caKey)
	return mustKeyPair(t, c, k)
}

// expiredLeaf issues a certificate from the CA that expired an hour ago.
func (f *tlsFiles) expiredLeaf(t *testing.T, cn string, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: names,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: time.Now().Add(-time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.caCert, key.Public(), f.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func genCert(t *testing.T, cn string, dns []string, ips []net.IP, isCA bool, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn}, DNSNames: dns, IPAddresses: ips,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return cert, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}))
}

func mustKeyPair(t *testing.T, c, k string) tls.Certificate {
	t.Helper()
	kp, err := tls.X509KeyPair([]byte(c), []byte(k))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// statPrefix is the listener's stat prefix for a bound 127.0.0.1 address.
func statPrefix(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return "listener.127.0.0.1_" + port + "."
}

// tlsHCMListener is a TLS-terminating HTTP listener routing to cluster;
// tlsExtra are DownstreamTlsContext fields indented 10 spaces.
func tlsHCMListener(f *tlsFiles, name, cluster, tlsExtra string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
    filter_chains:
    - filter_chain_match: { transport_protocol: tls }
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: ["h2", "http/1.1"]
            tls_certificates:
            - certificate_chain: { filename: %q }
              private_key: { filename: %q }
%s%s
`, name, f.serverCert, f.serverKey, tlsExtra, hcmFilters(name, cluster))
}

func hcmFilters(statPrefix, cluster string) string {
	return `      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ` + statPrefix + `
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            virtual_hosts:
` + catchAllVhost(cluster)
}

func httpsClient(cfg *tls.Config, h2 bool) *nethttp.Client {
	return &nethttp.Client{
		Timeout:   10 * time.Second,
		Transport: &nethttp.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2, DisableKeepAlives: true},
	}
}

func TestTLSTermination(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.WriteString(w, "plain backend")
	}))
	h := testutil.Start(t, bootstrap([]string{tlsHCMListener(f, "https", "backend", "")}, staticCluster("backend", backend)))
	addr := h.ListenerAddr("https")
	prefix := statPrefix(addr)

	tests := []struct {
		name      string
		h2        bool
		nextProto []string
		wantProto int
	}{
		// alpn_protocols [h2, http/1.1]: ALPN h2 makes the connection
		// manager speak HTTP/2.
		{name: "HTTP/2 through ALPN", h2: true, wantProto: 2},
		{name: "HTTP/1.1 through ALPN", nextProto: []string{"http/1.1"}, wantProto: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: f.roots, ServerName: "example.com", NextProtos: tc.nextProto}
			resp, err := httpsClient(cfg, tc.h2).Get("https://" + addr + "/")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "plain backend" || resp.ProtoMajor != tc.wantProto {
				t.Fatalf("got %d %q over HTTP/%d, want 200 %q over HTTP/%d", resp.StatusCode, b, resp.ProtoMajor, "plain backend", tc.wantProto)
			}
		})
	}
	waitStat(t, h, prefix+"ssl.handshake", 2)
	waitStat(t, h, prefix+"ssl.versions.TLSv1.3", 2)
	waitStat(t, h, "tls_inspector.sni_found", 2)

	// Envoy's servers refuse TLS below 1.2 by default.
	t.Run("TLS 1.1 client refused", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.roots, ServerName: "example.com", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11})
		if err == nil {
			c.Close()
			t.Fatal("a TLS 1.1 handshake succeeded")
		}
		waitStat(t, h, prefix+"ssl.connection_error", 1)
	})
	// A plaintext client finds no chain: transport_protocol is raw_buffer.
	t.Run("plaintext finds no filter chain", func(t *testing.T) {
		out := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
		if out != "" {
			t.Fatalf("plaintext request got %q, want the connection closed", out)
		}
		waitStat(t, h, prefix+"no_filter_chain_match", 1)
	})
}

func TestTLSMutual(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	backend := testutil.NamedBackend(t, "mtls")
	extra := fmt.Sprintf(`            validation_context:
              trusted_ca: { filename: %q }
              match_typed_subject_alt_names: [ { san_type: DNS, matcher: { exact: client.example.com } } ]
          require_client_certificate: true
`, f.ca)
	h := testutil.Start(t, bootstrap([]string{tlsHCMListener(f, "mtls", "backend", extra)}, staticCluster("backend", backend)))
	addr := h.ListenerAddr("mtls")
	prefix := statPrefix(addr)
	tests := []struct {
		name      string
		certs     []tls.Certificate
		wantOK    bool
		wantStat  string
		wantCount int64 // 0: 1
	}{
		{name: "known client", certs: []tls.Certificate{f.client}, wantOK: true, wantStat: "ssl.handshake"},
		{name: "no client certificate", wantStat: "ssl.fail_verify_no_cert"},
		{name: "unknown client", certs: []tls.Certificate{f.intruder}, wantStat: "ssl.fail_verify_error"},
		// Signed by the trusted CA but expired: the chain does not verify
		// (Envoy's DefaultCertValidator counts fail_verify_error too).
		// (The second fail_verify_error: the unknown client counted the first.)
		{name: "expired client certificate", certs: []tls.Certificate{f.expiredLeaf(t, "expired client", "client.example.com")}, wantStat: "ssl.fail_verify_error", wantCount: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: f.roots, ServerName: "example.com", Certificates: tc.certs}
			resp, err := httpsClient(cfg, false).Get("https://" + addr + "/")
			if tc.wantOK {
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			} else if err == nil {
				resp.Body.Close()
				t.Fatalf("request without an accepted client certificate got %d", resp.StatusCode)
			}
			want := tc.wantCount
			if want == 0 {
				want = 1
			}
			waitStat(t, h, prefix+tc.wantStat, want)
		})
	}
}

// tlsBackend serves TLS with cert and writes name to each connection after
// the handshake, so a client can tell who terminated its TLS.
func tlsBackend(t *testing.T, cert tls.Certificate, name string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	return greetOn(t, ln, name)
}

// greetOn accepts on ln until the test ends and writes name to each
// connection, then reads until the peer closes (5 s at most).
func greetOn(t *testing.T, ln net.Listener, name string) string {
	t.Helper()
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				io.WriteString(c, name+"\n")
				io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestTLSPassthroughBySNI: tls_inspector reads the SNI, server_names picks
// the chain, tcp_proxy forwards the still-encrypted bytes.
func TestTLSPassthroughBySNI(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	api := tlsBackend(t, f.leaf(t, "api backend", "api.example.com"), "api")
	web := tlsBackend(t, f.leaf(t, "web backend", "www.example.com", "static.example.com"), "web")
	chain := func(match, cluster string) string {
		return fmt.Sprintf(`    - filter_chain_match: %s
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: %s
          cluster: %s
`, match, cluster, cluster)
	}
	listener := `  - name: sni
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
    filter_chains:
` + chain(`{ server_names: [api.example.com] }`, "api") + chain(`{ server_names: ["*.example.com"] }`, "web")
	h := testutil.Start(t, bootstrap([]string{listener}, staticCluster("api", api), staticCluster("web", web)))
	addr := h.ListenerAddr("sni")
	tests := []struct {
		sni      string
		wantName string
		wantCN   string
	}{
		{sni: "api.example.com", wantName: "api", wantCN: "api backend"},
		{sni: "static.example.com", wantName: "web", wantCN: "web backend"},
	}
	for _, tc := range tests {
		t.Run(tc.sni, func(t *testing.T) {
			c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.roots, ServerName: tc.sni})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			// The backend's certificate reached the client: herald did
			// not terminate TLS.
			if got := c.ConnectionState().PeerCertificates[0].Subject.CommonName; got != tc.wantCN || strings.TrimSpace(line) != tc.wantName {
				t.Fatalf("reached %q with certificate %q, want %q with %q", strings.TrimSpace(line), got, tc.wantName, tc.wantCN)
			}
		})
	}
	t.Run("unknown SNI closed", func(t *testing.T) {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.roots, ServerName: "other.org"})
		if err == nil {
			c.Close()
			t.Fatal("a connection for other.org was forwarded")
		}
		waitStat(t, h, statPrefix(addr)+"no_filter_chain_match", 1)
	})
}

// TestUpstreamTLS: a plaintext listener proxies to an HTTPS backend with
// sni, trusted_ca and SAN verification, and a client certificate.
func TestUpstreamTLS(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	srv := httptest.NewUnstartedServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		client := ""
		if len(r.TLS.PeerCertificates) > 0 {
			client = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprintf(w, "sni=%s client=%s", r.TLS.ServerName, client)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{f.server}, ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: f.roots}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	backend := strings.TrimPrefix(srv.URL, "https://")
	tlsCluster := func(name, san string) string {
		return staticCluster(name, backend) + fmt.Sprintf(`    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: api.example.com
        common_tls_context:
          tls_certificates:
          - certificate_chain: { filename: %q }
            private_key: { filename: %q }
          validation_context:
            trusted_ca: { filename: %q }
            match_typed_subject_alt_names: [ { san_type: DNS, matcher: { exact: %s } } ]
`, f.clientCert, f.clientKey, f.ca, san)
	}
	listener := func(name, cluster string) string {
		return extraHCMListener(hcmSpec{name: name, vhosts: catchAllVhost(cluster)})
	}
	h := testutil.Start(t, bootstrap([]string{listener("good", "good"), listener("badsan", "badsan")},
		tlsCluster("good", "api.example.com"), tlsCluster("badsan", "db.other.org")))
	c := newClient()
	code, _, body := get(t, c, "http://"+h.ListenerAddr("good")+"/", "")
	if code != 200 || body != "sni=api.example.com client=client" {
		t.Fatalf("got %d %q, want 200 %q", code, body, "sni=api.example.com client=client")
	}
	waitStat(t, h, "cluster.good.ssl.handshake", 1)
	code, _, _ = get(t, c, "http://"+h.ListenerAddr("badsan")+"/", "")
	if code != 503 {
		t.Fatalf("SAN mismatch got %d, want 503", code)
	}
	waitStat(t, h, "cluster.badsan.ssl.fail_verify_san", 1)
}

// TestSeedHardenedConfig runs the seeds' https-h2-hardened example with its
// placeholder paths pointed at test files: validate accepts it, it serves
// HTTP/2 over TLS and refuses TLS 1.1.
func TestSeedHardenedConfig(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	seed, err := os.ReadFile(filepath.Join(testutil.RepoRoot(), "test/configs/valid/https-h2-hardened.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.WriteString(w, "seed backend "+r.URL.Path)
	}))
	_, port, _ := net.SplitHostPort(backend)
	cfg := strings.NewReplacer(
		"/etc/envoy/certs/server.crt", f.serverCert,
		"/etc/envoy/certs/server.key", f.serverKey,
		"/var/log/envoy/access.log", filepath.Join(f.dir, "access.log"),
		"port_value: 9901", "port_value: 0",
		"port_value: 8443", "port_value: 0",
		"port_value: 9090", "port_value: "+port,
	).Replace(string(seed))
	path := filepath.Join(f.dir, "seed.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(testutil.Binary(t), "--mode", "validate", "-c", path).CombinedOutput(); err != nil {
		t.Fatalf("herald --mode validate: %v\n%s", err, out)
	}
	h := testutil.Start(t, cfg)
	addr := h.ListenerAddr("https_listener")
	client := httpsClient(&tls.Config{RootCAs: f.roots, ServerName: "example.com"}, true)
	testutil.Eventually(t, 10*time.Second, func() error {
		resp, err := client.Get("https://" + addr + "/hello")
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "seed backend /hello" || resp.ProtoMajor != 2 {
			return fmt.Errorf("got %d %q over HTTP/%d", resp.StatusCode, b, resp.ProtoMajor)
		}
		return nil
	})
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: f.roots, ServerName: "example.com", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Fatal("the hardened listener accepted TLS 1.1")
	}
}

// TestListenerFiltersTimeout: a client that sends nothing is closed after
// listener_filters_timeout, or matched as plaintext with
// continue_on_listener_filters_timeout.
func TestListenerFiltersTimeout(t *testing.T) {
	t.Parallel()
	echo := testutil.TCPEcho(t)
	listener := func(name, cont string) string {
		return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters_timeout: 0.2s
    continue_on_listener_filters_timeout: %s
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: %s, cluster: echo }
`, name, cont, name)
	}
	h := testutil.Start(t, bootstrap([]string{listener("close", "false"), listener("continue", "true")}, staticCluster("echo", echo)))
	tests := []struct {
		listener string
		wantEcho bool
	}{
		{listener: "close"},
		{listener: "continue", wantEcho: true},
	}
	for _, tc := range tests {
		t.Run(tc.listener, func(t *testing.T) {
			addr := h.ListenerAddr(tc.listener)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			waitStat(t, h, statPrefix(addr)+"downstream_pre_cx_timeout", 1)
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "ping\n")
			line, err := bufio.NewReader(c).ReadString('\n')
			if tc.wantEcho && line != "ping\n" {
				t.Fatalf("read %q, %v; want the echo", line, err)
			}
			if !tc.wantEcho && err == nil {
				t.Fatalf("read %q; want the connection closed", line)
			}
		})
	}
}
