package tlsx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/secret"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
	"github.com/herald-proxy/herald/internal/xds"
)

// newSecrets is a secret manager with a file-polling xDS client and the
// given static secrets (YAML of one Secret each). Its stats go to store
// (nil: a private one).
func newSecrets(t *testing.T, store *stats.Store, statics ...string) *secret.Manager {
	t.Helper()
	if store == nil {
		store = stats.NewStore()
	}
	ctx, cancel := context.WithCancel(context.Background())
	client, err := xds.NewClient(nil, xds.Options{Stats: store, FilePollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	m := secret.NewManager(ctx, secret.Options{Client: client, Stats: store, PollInterval: 10 * time.Millisecond})
	var ss []*tlsv3.Secret
	for _, y := range statics {
		ss = append(ss, parse(t, &tlsv3.Secret{}, y))
	}
	if errs := secret.CheckStatic(ss, "static_resources.secrets"); len(errs) > 0 {
		t.Fatal(errs)
	}
	m.SetStatic(ss)
	t.Cleanup(func() {
		cancel()
		m.Close()
		client.Close()
	})
	return m
}

func certSecretYAML(name string, c *testCert) string {
	return fmt.Sprintf("name: %s\ntls_certificate:\n  certificate_chain: { inline_string: %q }\n  private_key: { inline_string: %q }\n", name, c.certPEM, c.keyPEM)
}

func caSecretYAML(name string, ca *testCert) string {
	return fmt.Sprintf("name: %s\nvalidation_context:\n  trusted_ca: { inline_string: %q }\n", name, ca.certPEM)
}

// sdsFile is a DiscoveryResponse holding secrets (YAML of each), as
// Envoy's filesystem SDS reads.
func sdsFile(version string, secrets ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version_info: %q\nresources:\n", version)
	for _, s := range secrets {
		b.WriteString("- \"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret\n")
		for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
			b.WriteString("  " + line + "\n")
		}
	}
	return b.String()
}

// writeAtomic replaces path by renaming a new file over it.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// servedLeaf handshakes with srv and returns the leaf certificate it sent.
func servedLeaf(t *testing.T, srv *Server, client *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	cs, err := handshake(t, srv, NewServerStats(stats.NewStore().Scope("l.")), client)
	if err != nil {
		return nil, err
	}
	if len(cs.PeerCertificates) == 0 {
		return nil, fmt.Errorf("no server certificate")
	}
	return cs.PeerCertificates[0], nil
}

func waitLeaf(t *testing.T, srv *Server, client *tls.Config, want *testCert) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		leaf, err := servedLeaf(t, srv, client)
		if err != nil {
			return err
		}
		if leaf.SerialNumber.Cmp(want.cert.SerialNumber) != 0 {
			return fmt.Errorf("served %s (serial %x), want %s", leaf.Subject.CommonName, leaf.SerialNumber, want.cert.Subject.CommonName)
		}
		return nil
	})
}

func TestStaticSecrets(t *testing.T) {
	p := newPKI(t)
	secrets := newSecrets(t, nil,
		certSecretYAML("server_cert", p.server),
		caSecretYAML("ca", p.ca),
		fmt.Sprintf("name: generic\ngeneric_secret: { secret: { inline_string: x } }\n"),
	)
	clientCert := keyPair(t, p.client)
	intruder := keyPair(t, p.otherClient)
	tests := []struct {
		name       string
		yaml       string
		clientCert *tls.Certificate
		wantErr    string // build error
		wantFail   bool   // handshake refused
	}{
		{
			name: "certificate from a static secret",
			yaml: "common_tls_context: { tls_certificate_sds_secret_configs: [ { name: server_cert } ] }\n",
		},
		{
			name: "validation context from a static secret accepts a client of the CA",
			yaml: "require_client_certificate: true\ncommon_tls_context:\n  tls_certificate_sds_secret_configs: [ { name: server_cert } ]\n" +
				"  validation_context_sds_secret_config: { name: ca }\n",
			clientCert: &clientCert,
		},
		{
			name: "validation context from a static secret refuses another CA's client",
			yaml: "require_client_certificate: true\ncommon_tls_context:\n  tls_certificate_sds_secret_configs: [ { name: server_cert } ]\n" +
				"  validation_context_sds_secret_config: { name: ca }\n",
			clientCert: &intruder,
			wantFail:   true,
		},
		{
			// The default's SAN matcher applies on top of the secret's CA.
			name: "combined validation context merges the default",
			yaml: "common_tls_context:\n  tls_certificate_sds_secret_configs: [ { name: server_cert } ]\n" +
				"  combined_validation_context:\n    default_validation_context: { match_typed_subject_alt_names: [ { san_type: DNS, matcher: { exact: other.example.com } } ] }\n" +
				"    validation_context_sds_secret_config: { name: ca }\n",
			clientCert: &clientCert,
			wantFail:   true,
		},
		{
			name:    "unknown static secret",
			yaml:    "common_tls_context: { tls_certificate_sds_secret_configs: [ { name: nope } ] }\n",
			wantErr: "ctx.common_tls_context.tls_certificate_sds_secret_configs[0].name: unknown static secret: nope",
		},
		{
			name:    "a validation context used as a certificate",
			yaml:    "common_tls_context: { tls_certificate_sds_secret_configs: [ { name: ca } ] }\n",
			wantErr: `secret "ca" is not a tls_certificate (it is validation_context)`,
		},
		{
			name: "a certificate used as a validation context",
			yaml: "common_tls_context:\n  tls_certificate_sds_secret_configs: [ { name: server_cert } ]\n" +
				"  validation_context_sds_secret_config: { name: generic }\n",
			wantErr: `validation_context_sds_secret_config: secret "generic" is not a validation_context (it is generic_secret)`,
		},
		{
			name:    "inline certificates and SDS together",
			yaml:    serverYAML(p, "  tls_certificate_sds_secret_configs: [ { name: server_cert } ]\n"),
			wantErr: "only one of tls_certificates and tls_certificate_sds_secret_configs may be used",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, tc.yaml), "ctx", secrets)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(p.ca.cert)
			cfg := &tls.Config{RootCAs: roots, ServerName: "example.com"}
			if tc.clientCert != nil {
				cfg.Certificates = []tls.Certificate{*tc.clientCert}
			}
			leaf, err := servedLeaf(t, srv, cfg)
			if tc.wantFail {
				if err == nil {
					t.Fatal("handshake succeeded, want it refused")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if leaf.SerialNumber.Cmp(p.server.cert.SerialNumber) != 0 {
				t.Errorf("served %s, want the static secret's certificate", leaf.Subject.CommonName)
			}
		})
	}
}

func TestSDSFileRotation(t *testing.T) {
	p := newPKI(t)
	second := newCert(t, certOpts{cn: "server two", dns: []string{"example.com"}, parent: p.ca})
	dir := t.TempDir()
	path := filepath.Join(dir, "sds.yaml")
	writeAtomic(t, path, sdsFile("1", certSecretYAML("server_cert", p.server)))
	store := stats.NewStore()
	secrets := newSecrets(t, store)
	y := fmt.Sprintf("common_tls_context: { tls_certificate_sds_secret_configs: [ { name: server_cert, sds_config: { path_config_source: { path: %q } } } ] }\n", path)
	srv, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, y), "ctx", secrets)
	if err != nil {
		t.Fatal(err)
	}
	lst := NewServerStats(store.Scope("listener.x."))
	srv.Track(lst)
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)
	client := &tls.Config{RootCAs: roots, ServerName: "example.com"}

	waitLeaf(t, srv, client, p.server)
	// The first install counts even though it may precede Track.
	before := lst.ContextUpdateBySDS.Value()
	if before != 1 {
		t.Errorf("ssl_context_update_by_sds after the first secret = %d, want 1", before)
	}

	// Rotation by atomic rename: new handshakes see the new certificate.
	writeAtomic(t, path, sdsFile("2", certSecretYAML("server_cert", second)))
	waitLeaf(t, srv, client, second)
	if got := lst.ContextUpdateBySDS.Value(); got != before+1 {
		t.Errorf("ssl_context_update_by_sds = %d, want %d", got, before+1)
	}

	// A rotated file whose key does not match: rejected, the second
	// certificate stays.
	bad := fmt.Sprintf("name: server_cert\ntls_certificate:\n  certificate_chain: { inline_string: %q }\n  private_key: { inline_string: %q }\n", p.server.certPEM, second.keyPEM)
	writeAtomic(t, path, sdsFile("3", bad))
	rejected := store.Counter("sds.server_cert.update_rejected")
	testutil.Eventually(t, 5*time.Second, func() error {
		if rejected.Value() == 0 {
			return fmt.Errorf("sds.server_cert.update_rejected = 0")
		}
		return nil
	})
	waitLeaf(t, srv, client, second)
	if got := store.Counter("sds.server_cert.update_success").Value(); got != 2 {
		t.Errorf("sds.server_cert.update_success = %d, want 2", got)
	}
}

func TestSDSKeyRotationOfNamedFiles(t *testing.T) {
	p := newPKI(t)
	second := newCert(t, certOpts{cn: "server two", dns: []string{"example.com"}, parent: p.ca})
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeAtomic(t, certPath, p.server.certPEM)
	writeAtomic(t, keyPath, p.server.keyPEM)
	sds := filepath.Join(dir, "sds.yaml")
	writeAtomic(t, sds, sdsFile("1", fmt.Sprintf("name: server_cert\ntls_certificate:\n  certificate_chain: { filename: %q }\n  private_key: { filename: %q }\n", certPath, keyPath)))
	store := stats.NewStore()
	secrets := newSecrets(t, store)
	y := fmt.Sprintf("common_tls_context: { tls_certificate_sds_secret_configs: [ { name: server_cert, sds_config: { path: %q } } ] }\n", sds)
	srv, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, y), "ctx", secrets)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)
	client := &tls.Config{RootCAs: roots, ServerName: "example.com"}
	waitLeaf(t, srv, client, p.server)

	// The named files move: Envoy's key rotation.
	writeAtomic(t, keyPath, second.keyPEM)
	writeAtomic(t, certPath, second.certPEM)
	waitLeaf(t, srv, client, second)

	// A half-rotated pair (new certificate, old key) is refused and
	// counted; the previous pair stays.
	writeAtomic(t, certPath, p.server.certPEM)
	failed := store.Counter("sds.server_cert.key_rotation_failed")
	testutil.Eventually(t, 5*time.Second, func() error {
		if failed.Value() == 0 {
			return fmt.Errorf("sds.server_cert.key_rotation_failed = 0")
		}
		return nil
	})
	waitLeaf(t, srv, client, second)
}

func TestSDSNotReady(t *testing.T) {
	// A secret that is not in the file: the context has no certificate,
	// handshakes are refused and counted, as Envoy's NotReadySslSocket.
	p := newPKI(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "sds.yaml")
	writeAtomic(t, path, sdsFile("1", certSecretYAML("other", p.server)))
	store := stats.NewStore()
	secrets := newSecrets(t, store)
	y := fmt.Sprintf("common_tls_context: { tls_certificate_sds_secret_configs: [ { name: server_cert, sds_config: { path: %q, initial_fetch_timeout: 0.05s } } ] }\n", path)
	srv, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, y), "ctx", secrets)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	secrets.WaitReady(ctx)
	if ctx.Err() != nil {
		t.Fatal("WaitReady did not end at the initial_fetch_timeout")
	}
	st := NewServerStats(store.Scope("l."))
	if _, err := handshake(t, srv, st, &tls.Config{InsecureSkipVerify: true}); err != ErrSecretsNotReady {
		t.Fatalf("err = %v, want ErrSecretsNotReady", err)
	}
	if got := st.SecretsNotReady.Value(); got != 1 {
		t.Errorf("downstream_context_secrets_not_ready = %d, want 1", got)
	}
}

func TestUpstreamSDS(t *testing.T) {
	// The client certificate and the validation context of an upstream
	// context come from one SDS file; the server checks the client.
	p := newPKI(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "sds.yaml")
	writeAtomic(t, path, sdsFile("1", certSecretYAML("client_cert", p.client), caSecretYAML("ca", p.ca)))
	secrets := newSecrets(t, nil)
	src := fmt.Sprintf("{ path_config_source: { path: %q } }", path)
	y := fmt.Sprintf("common_tls_context:\n  tls_certificate_sds_secret_configs: [ { name: client_cert, sds_config: %s } ]\n  validation_context_sds_secret_config: { name: ca, sds_config: %s }\n", src, src)
	cl, err := BuildClient(parse(t, &tlsv3.UpstreamTlsContext{}, y), "ctx", nil, secrets)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	secrets.WaitReady(ctx)
	if cl.Config() == nil {
		t.Fatal("client config not ready after both secrets arrived")
	}
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)
	srvCert := keyPair(t, p.server)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() {
		s := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: roots})
		done <- s.Handshake()
	}()
	st := NewClientStats(stats.NewStore().Scope("cluster.c."))
	if _, err := cl.Handshake(ctx, a, st); err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server refused the SDS client certificate: %v", err)
	}
}
