package integration

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/herald-proxy/herald/internal/testutil"
)

// sdsCert is a server certificate from the test CA with its PEM forms.
type sdsCert struct {
	serial            *big.Int
	certPEM, keyPEM   string
	certPath, keyPath string // when written
}

func (f *tlsFiles) sdsCert(t *testing.T, cn string) sdsCert {
	t.Helper()
	c, _, cp, kp := genCert(t, cn, []string{"example.com"}, []net.IP{net.IPv4(127, 0, 0, 1)}, false, f.caCert, f.caKey)
	return sdsCert{serial: c.SerialNumber, certPEM: cp, keyPEM: kp}
}

// secretYAML is a tls_certificate Secret with inline PEM, indented by ind.
func secretYAML(name string, c sdsCert, ind string) string {
	return fmt.Sprintf("%sname: %s\n%stls_certificate:\n%s  certificate_chain: { inline_string: %q }\n%s  private_key: { inline_string: %q }\n",
		ind, name, ind, ind, c.certPEM, ind, c.keyPEM)
}

// sdsResponse is a filesystem SDS file: a DiscoveryResponse with secrets.
func sdsResponse(version string, secrets ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version_info: %q\nresources:\n", version)
	for _, s := range secrets {
		b.WriteString("- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n" + s)
	}
	return b.String()
}

// indent prefixes every line of s with n spaces.
func indent(s string, n int) string {
	pad := strings.Repeat(" ", n)
	lines := strings.SplitAfter(s, "\n")
	var b strings.Builder
	for _, l := range lines {
		if l != "" {
			b.WriteString(pad + l)
		}
	}
	return b.String()
}

// sdsChains is a filter_chains block (indentation 0) with one TLS chain
// answering every request with 200 "sds". common is the
// common_tls_context body and downstream other DownstreamTlsContext
// fields, both written at indentation 0.
func sdsChains(common, downstream string) string {
	return `filter_chains:
- transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
` + indent(downstream, 6) + `      common_tls_context:
` + indent(common, 8) + `  filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: sds
      http_filters:
      - name: envoy.filters.http.router
        typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
      route_config:
        virtual_hosts:
        - name: all
          domains: ["*"]
          routes:
          - match: { prefix: "/" }
            direct_response: { status: 200, body: { inline_string: sds } }
`
}

// sdsListener is a static listener (for bootstrap) with sdsChains.
func sdsListener(name, common, downstream string) string {
	return "  - name: " + name + "\n    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }\n" +
		indent(sdsChains(common, downstream), 4)
}

// servedSerial handshakes with addr and returns the serial of the leaf the
// server sent.
func servedSerial(roots *x509.CertPool, addr string, cfg *tls.Config) (*big.Int, error) {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	cfg = cfg.Clone()
	cfg.RootCAs, cfg.ServerName = roots, "example.com"
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber, nil
}

func waitServed(t *testing.T, roots *x509.CertPool, addr string, want sdsCert) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, func() error {
		got, err := servedSerial(roots, addr, nil)
		if err != nil {
			return err
		}
		if got.Cmp(want.serial) != 0 {
			return fmt.Errorf("served serial %x, want %x", got, want.serial)
		}
		return nil
	})
}

// tlsKeepAlive is one open HTTPS/1.1 connection.
type tlsKeepAlive struct {
	c *tls.Conn
	r *bufio.Reader
}

func dialTLSKeepAlive(t *testing.T, roots *x509.CertPool, addr string) *tlsKeepAlive {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "example.com", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &tlsKeepAlive{c: c, r: bufio.NewReader(c)}
}

func (k *tlsKeepAlive) get(t *testing.T) string {
	t.Helper()
	k.c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(k.c, "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")
	resp, body := readResponse(t, k.r, "GET")
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("GET on the open connection: %d close=%v %q", resp.StatusCode, resp.Close, body)
	}
	return body
}

func TestSDSFromFile(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	first, second := f.sdsCert(t, "first"), f.sdsCert(t, "second")
	dir := t.TempDir()
	path := filepath.Join(dir, "sds.yaml")
	writeAtomic(t, path, sdsResponse("1", secretYAML("server_cert", first, "  ")))
	ctx := fmt.Sprintf("tls_certificate_sds_secret_configs:\n- name: server_cert\n  sds_config: { path_config_source: { path: %q, watched_directory: { path: %q } } }\n", path, dir)
	h := testutil.Start(t, bootstrap([]string{sdsListener("https", ctx, "")}))
	addr := h.ListenerAddr("https")
	waitServed(t, f.roots, addr, first)

	open := dialTLSKeepAlive(t, f.roots, addr)
	if got := open.get(t); got != "sds" {
		t.Fatalf("GET = %q, want sds", got)
	}
	if open.c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(first.serial) != 0 {
		t.Fatal("the open connection did not negotiate the first certificate")
	}

	// Rotation by atomic rename: new handshakes get the second
	// certificate; the open connection keeps working.
	writeAtomic(t, path, sdsResponse("2", secretYAML("server_cert", second, "  ")))
	waitServed(t, f.roots, addr, second)
	if got := open.get(t); got != "sds" {
		t.Fatalf("GET on the connection opened before the rotation = %q, want sds", got)
	}
	waitStat(t, h, "sds.server_cert.update_success", 2)
	waitStat(t, h, statPrefix(addr)+"server_ssl_socket_factory.ssl_context_update_by_sds", 2)

	// A bad rotated file (key of another certificate) is rejected; the
	// second certificate keeps serving.
	bad := fmt.Sprintf("  name: server_cert\n  tls_certificate:\n    certificate_chain: { inline_string: %q }\n    private_key: { inline_string: %q }\n", first.certPEM, second.keyPEM)
	writeAtomic(t, path, sdsResponse("3", bad))
	waitStat(t, h, "sds.server_cert.update_rejected", 1)
	waitServed(t, f.roots, addr, second)
	if !strings.Contains(h.Output(), "private key does not match public key") {
		t.Errorf("the rejection is not logged with its cause:\n%s", h.Output())
	}

	// Admin: /config_dump shows the active secret with its version and
	// the private key redacted; /certs shows the certificate.
	var active secretsDump
	h.AdminJSON("/config_dump?resource=dynamic_active_secrets", &active)
	if len(active.Configs) != 1 || active.Configs[0].Name != "server_cert" || active.Configs[0].VersionInfo != "2" ||
		active.Configs[0].Secret.TLSCertificate.PrivateKey["inline_string"] != "[redacted]" {
		t.Errorf("/config_dump dynamic_active_secrets: want server_cert at version 2 with its key redacted, got %+v", active)
	}
	_, certs := h.Admin("GET", "/certs")
	if !strings.Contains(certs, fmt.Sprintf("%x", second.serial)) {
		t.Errorf("/certs does not show the second certificate (serial %x):\n%s", second.serial, certs)
	}
}

func TestSDSKeyRotationOfFiles(t *testing.T) {
	t.Parallel()
	// The secret names its certificate files; moving new files over them
	// is picked up (Envoy's key rotation), a mismatched pair is refused.
	f := newTLSFiles(t)
	first, second := f.sdsCert(t, "first"), f.sdsCert(t, "second")
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeAtomic(t, certPath, first.certPEM)
	writeAtomic(t, keyPath, first.keyPEM)
	sds := filepath.Join(t.TempDir(), "sds.yaml")
	writeAtomic(t, sds, sdsResponse("1", fmt.Sprintf("  name: server_cert\n  tls_certificate:\n    certificate_chain: { filename: %q }\n    private_key: { filename: %q }\n", certPath, keyPath)))
	ctx := fmt.Sprintf("tls_certificate_sds_secret_configs:\n- name: server_cert\n  sds_config: { path: %q }\n", sds)
	h := testutil.Start(t, bootstrap([]string{sdsListener("https", ctx, "")}))
	addr := h.ListenerAddr("https")
	waitServed(t, f.roots, addr, first)

	writeAtomic(t, keyPath, second.keyPEM)
	writeAtomic(t, certPath, second.certPEM)
	waitServed(t, f.roots, addr, second)

	writeAtomic(t, certPath, first.certPEM)
	waitStat(t, h, "sds.server_cert.key_rotation_failed", 1)
	waitServed(t, f.roots, addr, second)
}

func TestStaticSecrets(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	cfg := adminBlock + fmt.Sprintf(`static_resources:
  secrets:
  - name: server_cert
    tls_certificate:
      certificate_chain: { filename: %q }
      private_key: { filename: %q }
  - name: client_ca
    validation_context:
      trusted_ca: { filename: %q }
  listeners:
`, f.serverCert, f.serverKey, f.ca) + sdsListener("mtls",
		"tls_certificate_sds_secret_configs: [ { name: server_cert } ]\nvalidation_context_sds_secret_config: { name: client_ca }\n",
		"require_client_certificate: true\n")
	h := testutil.Start(t, cfg)
	addr := h.ListenerAddr("mtls")

	tests := []struct {
		name    string
		cert    *tls.Certificate
		wantErr bool
	}{
		{name: "client of the CA", cert: &f.client},
		{name: "client of another CA", cert: &f.intruder, wantErr: true},
		{name: "no client certificate", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := &tls.Config{RootCAs: f.roots, ServerName: "example.com", NextProtos: []string{"http/1.1"}}
			if tc.cert != nil {
				cc.Certificates = []tls.Certificate{*tc.cert}
			}
			resp, err := httpsClient(cc, false).Get("https://" + addr + "/")
			if tc.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatal("request succeeded, want the handshake refused")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d, want 200", resp.StatusCode)
			}
		})
	}
	var static secretsDump
	h.AdminJSON("/config_dump?resource=static_secrets", &static)
	var names []string
	for _, c := range static.Configs {
		names = append(names, c.Name)
	}
	if strings.Join(names, ",") != "server_cert,client_ca" {
		t.Errorf("/config_dump static_secrets = %v, want server_cert, client_ca", names)
	}
}

// secretsDump is the part of a /config_dump?resource=...secrets answer the
// tests read.
type secretsDump struct {
	Configs []struct {
		Name        string `json:"name"`
		VersionInfo string `json:"version_info"`
		Secret      struct {
			TLSCertificate struct {
				PrivateKey map[string]string `json:"private_key"`
			} `json:"tls_certificate"`
		} `json:"secret"`
	} `json:"configs"`
}

func TestUnknownStaticSecret(t *testing.T) {
	t.Parallel()
	cfg := bootstrap([]string{sdsListener("https", "tls_certificate_sds_secret_configs: [ { name: nope } ]\n", "")})
	path := filepath.Join(t.TempDir(), "envoy.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runHerald(t, "--mode", "validate", "-c", path)
	if code == 0 {
		t.Fatalf("validate accepted an unknown static secret:\n%s", out)
	}
	if want := "tls_certificate_sds_secret_configs[0].name: unknown static secret: nope"; !strings.Contains(out, want) {
		t.Errorf("output does not contain %q:\n%s", want, out)
	}
}

func TestSDSOverADS(t *testing.T) {
	t.Parallel()
	ms := startManagementServer(t)
	f := newTLSFiles(t)
	first, second := f.sdsCert(t, "first"), f.sdsCert(t, "second")
	lis := fromYAML(t, &listenerv3.Listener{}, "name: https\naddress: { socket_address: { address: 127.0.0.1, port_value: 0 } }\n"+
		sdsChains("tls_certificate_sds_secret_configs:\n- name: server_cert\n  sds_config: { ads: {}, resource_api_version: V3 }\n", ""))
	// CDS must answer for herald to initialize; one unused cluster.
	unused := fromYAML(t, &clusterv3.Cluster{}, `
name: unused
type: STATIC
load_assignment: { cluster_name: unused, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } } ] } ] }
`)
	push := func(version string, c sdsCert) {
		s := fromYAML(t, &tlsv3.Secret{}, secretYAML("server_cert", c, ""))
		ms.push(t, version, map[resourcev3.Type][]types.Resource{
			resourcev3.ListenerType: {lis},
			resourcev3.ClusterType:  {unused},
			resourcev3.SecretType:   {s},
		})
	}
	push("v1", first)
	h := testutil.Start(t, adsBootstrap(ms.addr))
	addr := h.ListenerAddr("https")
	// Listener warming waited for the secret: the first handshake works.
	if got, err := servedSerial(f.roots, addr, nil); err != nil || got.Cmp(first.serial) != 0 {
		t.Fatalf("first handshake: serial %x, err %v; want %x", got, err, first.serial)
	}
	open := dialTLSKeepAlive(t, f.roots, addr)
	open.get(t)

	push("v2", second)
	waitServed(t, f.roots, addr, second)
	open.get(t)
	waitStat(t, h, "sds.server_cert.update_success", 2)
	if got := h.Stat("listener_manager.listener_modified"); got > 0 {
		t.Errorf("listener_manager.listener_modified = %d: a secret rotation must not rebuild the listener", got)
	}
}

// TestSDSOverItsOwnStream: the listener's certificate comes over a
// per-type SDS stream (api_config_source GRPC to the static xds_cluster),
// not over ADS; a pushed rotation is served to new handshakes.
func TestSDSOverItsOwnStream(t *testing.T) {
	t.Parallel()
	ms := startManagementServer(t)
	f := newTLSFiles(t)
	first, second := f.sdsCert(t, "first"), f.sdsCert(t, "second")
	lis := fromYAML(t, &listenerv3.Listener{}, "name: https\naddress: { socket_address: { address: 127.0.0.1, port_value: 0 } }\n"+
		sdsChains(`tls_certificate_sds_secret_configs:
- name: server_cert
  sds_config:
    resource_api_version: V3
    api_config_source:
      api_type: GRPC
      transport_api_version: V3
      grpc_services: [ { envoy_grpc: { cluster_name: xds_cluster } } ]
`, ""))
	unused := fromYAML(t, &clusterv3.Cluster{}, `
name: unused
type: STATIC
load_assignment: { cluster_name: unused, endpoints: [ { lb_endpoints: [ { endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 1 } } } } ] } ] }
`)
	push := func(version string, c sdsCert) {
		s := fromYAML(t, &tlsv3.Secret{}, secretYAML("server_cert", c, ""))
		ms.push(t, version, map[resourcev3.Type][]types.Resource{
			resourcev3.ListenerType: {lis},
			resourcev3.ClusterType:  {unused},
			resourcev3.SecretType:   {s},
		})
	}
	push("v1", first)
	h := testutil.Start(t, adsBootstrap(ms.addr))
	addr := h.ListenerAddr("https")
	if got, err := servedSerial(f.roots, addr, nil); err != nil || got.Cmp(first.serial) != 0 {
		t.Fatalf("first handshake: serial %x, err %v; want %x", got, err, first.serial)
	}
	push("v2", second)
	waitServed(t, f.roots, addr, second)
	waitStat(t, h, "sds.server_cert.update_success", 2)
}
