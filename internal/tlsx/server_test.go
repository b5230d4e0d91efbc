package tlsx

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/herald-proxy/herald/internal/stats"
)

func parse[M proto.Message](t *testing.T, m M, y string) M {
	t.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if err := protojson.Unmarshal(j, m); err != nil {
		t.Fatalf("%v\n%s", err, j)
	}
	return m
}

// pemYAML indents a PEM block as a YAML literal under indent spaces.
func pemYAML(s string, indent int) string {
	pad := strings.Repeat(" ", indent)
	return "|\n" + pad + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+pad)
}

// pki is one test CA with a server and a client certificate.
type pki struct {
	ca, server, rsaServer, client, otherClient *testCert
}

func newPKI(t *testing.T) *pki {
	ca := newCert(t, certOpts{cn: "test ca", isCA: true})
	other := newCert(t, certOpts{cn: "other ca", isCA: true})
	return &pki{
		ca:          ca,
		server:      newCert(t, certOpts{cn: "server", dns: []string{"example.com"}, parent: ca}),
		rsaServer:   newCert(t, certOpts{cn: "rsa server", dns: []string{"example.com"}, rsa: true, parent: ca}),
		client:      newCert(t, certOpts{cn: "client", dns: []string{"client.example.com"}, parent: ca}),
		otherClient: newCert(t, certOpts{cn: "intruder", dns: []string{"client.example.com"}, parent: other}),
	}
}

func keyPair(t *testing.T, c *testCert) tls.Certificate {
	t.Helper()
	kp, err := tls.X509KeyPair([]byte(c.certPEM), []byte(c.keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// handshake runs srv against a crypto/tls client over a pipe and returns
// the server's error and the client's view.
func handshake(t *testing.T, srv *Server, st *Stats, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan tls.ConnectionState, 1)
	go func() {
		c := tls.Client(b, client)
		if err := c.Handshake(); err != nil {
			b.Close()
			done <- tls.ConnectionState{}
			return
		}
		// Read so a TLS 1.3 server's verdict on the client certificate
		// (and its session ticket) arrives.
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		c.Read(make([]byte, 1))
		done <- c.ConnectionState()
	}()
	tc, err := srv.Handshake(a, time.Now().Add(5*time.Second), st)
	if err == nil {
		tc.Write([]byte("x"))
	} else {
		a.Close()
	}
	return <-done, err
}

func serverYAML(p *pki, extra string) string {
	return `
common_tls_context:
  tls_certificates:
  - certificate_chain: { inline_string: ` + fmt.Sprintf("%q", p.server.certPEM) + ` }
    private_key: { inline_string: ` + fmt.Sprintf("%q", p.server.keyPEM) + ` }
` + extra
}

func TestServerHandshake(t *testing.T) {
	p := newPKI(t)
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)
	caYAML := fmt.Sprintf("%q", p.ca.certPEM)
	spki := sha256.Sum256(p.client.cert.RawSubjectPublicKeyInfo)
	hash := sha256.Sum256(p.client.cert.Raw)
	tests := []struct {
		name      string
		extra     string
		client    *tls.Config
		wantErr   bool
		wantALPN  string
		wantStats map[string]uint64
	}{
		{name: "TLS 1.3 by default", client: &tls.Config{RootCAs: roots, ServerName: "example.com"},
			wantStats: map[string]uint64{"handshake": 1, "versions.TLSv1.3": 1, "ciphers.TLS_AES_128_GCM_SHA256": 1, "curves.X25519": 1, "no_certificate": 1}},
		{name: "TLS 1.2 cipher named as OpenSSL does", client: &tls.Config{RootCAs: roots, ServerName: "example.com", MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
			wantStats: map[string]uint64{"handshake": 1, "versions.TLSv1.2": 1, "ciphers.ECDHE-ECDSA-AES128-GCM-SHA256": 1}},
		// Envoy's servers default to tls_minimum_protocol_version TLSv1_2.
		{name: "TLS 1.1 client refused", client: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11},
			wantErr: true, wantStats: map[string]uint64{"connection_error": 1, "handshake": 0}},
		{name: "TLS 1.3 only", extra: "  tls_params: { tls_minimum_protocol_version: TLSv1_3 }\n",
			client: &tls.Config{RootCAs: roots, MaxVersion: tls.VersionTLS12}, wantErr: true, wantStats: map[string]uint64{"connection_error": 1}},
		{name: "cipher_suites restrict TLS 1.2", extra: "  tls_params: { tls_maximum_protocol_version: TLSv1_2, cipher_suites: [ECDHE-ECDSA-AES256-GCM-SHA384] }\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com"}, wantStats: map[string]uint64{"ciphers.ECDHE-ECDSA-AES256-GCM-SHA384": 1}},
		{name: "ALPN h2", extra: "  alpn_protocols: [h2, http/1.1]\n", client: &tls.Config{RootCAs: roots, ServerName: "example.com", NextProtos: []string{"h2", "http/1.1"}},
			wantALPN: "h2"},
		// BoringSSL goes on without ALPN when nothing overlaps.
		{name: "ALPN without overlap", extra: "  alpn_protocols: [h2]\n", client: &tls.Config{RootCAs: roots, ServerName: "example.com", NextProtos: []string{"spdy/3"}},
			wantALPN: "", wantStats: map[string]uint64{"handshake": 1}},
		{name: "mTLS accepted", extra: "  validation_context: { trusted_ca: { inline_string: " + caYAML + " } }\nrequire_client_certificate: true\n",
			client:    &tls.Config{RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{keyPair(t, p.client)}},
			wantStats: map[string]uint64{"handshake": 1, "no_certificate": 0}},
		{name: "mTLS without a client certificate", extra: "  validation_context: { trusted_ca: { inline_string: " + caYAML + " } }\nrequire_client_certificate: true\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com"}, wantErr: true, wantStats: map[string]uint64{"fail_verify_no_cert": 1, "connection_error": 1}},
		{name: "mTLS unknown client CA", extra: "  validation_context: { trusted_ca: { inline_string: " + caYAML + " } }\nrequire_client_certificate: true\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{keyPair(t, p.otherClient)}}, wantErr: true,
			wantStats: map[string]uint64{"fail_verify_error": 1, "connection_error": 1}},
		{name: "optional client certificate absent", extra: "  validation_context: { trusted_ca: { inline_string: " + caYAML + " } }\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com"}, wantStats: map[string]uint64{"handshake": 1, "no_certificate": 1}},
		{name: "SAN matched", extra: "  validation_context: { trusted_ca: { inline_string: " + caYAML + " }, match_typed_subject_alt_names: [ { san_type: DNS, matcher: { exact: client.example.com } } ] }\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{keyPair(t, p.client)}}, wantStats: map[string]uint64{"handshake": 1}},
		{name: "SAN mismatch", extra: "  validation_context: { trusted_ca: { inline_string: " + caYAML + " }, match_typed_subject_alt_names: [ { san_type: DNS, matcher: { exact: other.example.com } } ] }\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{keyPair(t, p.client)}}, wantErr: true,
			wantStats: map[string]uint64{"fail_verify_san": 1}},
		{name: "SPKI pin matched", extra: "  validation_context: { verify_certificate_spki: [" + base64.StdEncoding.EncodeToString(spki[:]) + "] }\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{keyPair(t, p.client)}}, wantStats: map[string]uint64{"handshake": 1}},
		{name: "hash pin with colons matched", extra: "  validation_context: { verify_certificate_hash: [\"" + colonHex(hash[:]) + "\"] }\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{keyPair(t, p.client)}}, wantStats: map[string]uint64{"handshake": 1}},
		{name: "hash pin mismatch", extra: "  validation_context: { verify_certificate_hash: [" + hex.EncodeToString(hash[:len(hash)-1]) + "00] }\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{keyPair(t, p.client)}}, wantErr: true,
			wantStats: map[string]uint64{"fail_verify_cert_hash": 1}},
		// Pins make the certificate required (common.proto, trusted_ca).
		{name: "hash pin without a client certificate", extra: "  validation_context: { verify_certificate_hash: [" + hex.EncodeToString(hash[:]) + "] }\n",
			client: &tls.Config{RootCAs: roots, ServerName: "example.com"}, wantErr: true, wantStats: map[string]uint64{"fail_verify_no_cert": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dc := parse(t, &tlsv3.DownstreamTlsContext{}, serverYAML(p, tc.extra))
			srv, err := BuildServer(dc, "ctx", nil)
			if err != nil {
				t.Fatal(err)
			}
			store := stats.NewStore()
			st := NewStats(store.Scope("listener.x."))
			cs, err := handshake(t, srv, st, tc.client)
			if (err != nil) != tc.wantErr {
				t.Fatalf("server handshake error = %v, want error: %v", err, tc.wantErr)
			}
			if !tc.wantErr && cs.NegotiatedProtocol != tc.wantALPN {
				t.Errorf("ALPN = %q, want %q", cs.NegotiatedProtocol, tc.wantALPN)
			}
			for name, want := range tc.wantStats {
				if got := store.Counter("listener.x.ssl." + name).Value(); got != want {
					t.Errorf("ssl.%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":")
}

// TestCertificateSelection: with an ECDSA and an RSA certificate, a TLS 1.2
// client that only supports RSA suites gets the RSA one (Envoy picks by what
// the client supports). The context stops at TLS 1.2: with TLS 1.3 allowed,
// Envoy judges a client that sends supported_versions (Go's always does) by
// its signature algorithms alone (see TestFindCertificate).
func TestCertificateSelection(t *testing.T) {
	p := newPKI(t)
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)
	y := serverYAML(p, `  - certificate_chain: { inline_string: `+fmt.Sprintf("%q", p.rsaServer.certPEM)+` }
    private_key: { inline_string: `+fmt.Sprintf("%q", p.rsaServer.keyPEM)+` }
  tls_params: { tls_maximum_protocol_version: TLSv1_2 }
`)
	srv, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, y), "ctx", nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		suites []uint16
		want   string
	}{
		{name: "ECDSA client", suites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, want: "server"},
		{name: "RSA client", suites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}, want: "rsa server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := NewStats(stats.NewStore().Scope("l."))
			cs, err := handshake(t, srv, st, &tls.Config{RootCAs: roots, ServerName: "example.com", MaxVersion: tls.VersionTLS12, CipherSuites: tc.suites})
			if err != nil {
				t.Fatal(err)
			}
			if got := cs.PeerCertificates[0].Subject.CommonName; got != tc.want {
				t.Errorf("certificate = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSessionResumption(t *testing.T) {
	p := newPKI(t)
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)
	tests := []struct {
		name       string
		extra      string
		wantReused uint64
	}{
		{name: "tickets on by default", wantReused: 1},
		{name: "disable_stateless_session_resumption", extra: "disable_stateless_session_resumption: true\n", wantReused: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, serverYAML(p, tc.extra)), "ctx", nil)
			if err != nil {
				t.Fatal(err)
			}
			store := stats.NewStore()
			st := NewStats(store.Scope("l."))
			client := &tls.Config{RootCAs: roots, ServerName: "example.com", ClientSessionCache: tls.NewLRUClientSessionCache(4)}
			for range 2 {
				if _, err := handshake(t, srv, st, client); err != nil {
					t.Fatal(err)
				}
			}
			if got := store.Counter("l.ssl.session_reused").Value(); got != tc.wantReused {
				t.Errorf("session_reused = %d, want %d", got, tc.wantReused)
			}
		})
	}
}

func TestBuildServerErrors(t *testing.T) {
	p := newPKI(t)
	t.Setenv("HERALD_TEST_KEY", p.server.keyPEM)
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "environment_variable and inline_bytes sources", yaml: `
common_tls_context:
  tls_certificates:
  - certificate_chain: { inline_bytes: ` + base64.StdEncoding.EncodeToString([]byte(p.server.certPEM)) + ` }
    private_key: { environment_variable: HERALD_TEST_KEY }
`},
		{name: "no certificate", yaml: "common_tls_context: {}\n", wantErr: "ctx.common_tls_context.tls_certificates: a server TLS context needs at least one certificate"},
		{name: "missing file", yaml: "common_tls_context: { tls_certificates: [ { certificate_chain: { filename: /nonexistent/c.pem }, private_key: { filename: /nonexistent/k.pem } } ] }\n",
			wantErr: `ctx.common_tls_context.tls_certificates[0].certificate_chain.filename: cannot read "/nonexistent/c.pem": no such file or directory`},
		{name: "unset environment variable", yaml: "common_tls_context: { tls_certificates: [ { certificate_chain: { environment_variable: HERALD_NOT_SET_XYZ }, private_key: { environment_variable: HERALD_TEST_KEY } } ] }\n",
			wantErr: `certificate_chain.environment_variable: environment variable "HERALD_NOT_SET_XYZ" is not set`},
		{name: "cipher Go cannot do", yaml: serverYAML(p, "  tls_params: { cipher_suites: [ECDHE-ECDSA-AES128-GCM-SHA256, PSK-AES128-CBC-SHA] }\n"),
			wantErr: `ctx.common_tls_context.tls_params.cipher_suites[1]: cipher suite "PSK-AES128-CBC-SHA" is not supported by herald`},
		{name: "unknown curve", yaml: serverYAML(p, "  tls_params: { ecdh_curves: [X448] }\n"), wantErr: `ecdh_curves[0]: curve "X448" is not supported by herald`},
		{name: "minimum above maximum", yaml: serverYAML(p, "  tls_params: { tls_minimum_protocol_version: TLSv1_3, tls_maximum_protocol_version: TLSv1_2 }\n"),
			wantErr: "tls_minimum_protocol_version TLSv1.3 is above tls_maximum_protocol_version TLSv1.2"},
		{name: "unknown static secret", yaml: "common_tls_context: { tls_certificate_sds_secret_configs: [ { name: s } ] }\n",
			wantErr: "ctx.common_tls_context.tls_certificate_sds_secret_configs[0].name: unknown static secret: s"},
		{name: "key does not match", yaml: "common_tls_context: { tls_certificates: [ { certificate_chain: { inline_string: " + fmt.Sprintf("%q", p.server.certPEM) +
			" }, private_key: { inline_string: " + fmt.Sprintf("%q", p.client.keyPEM) + " } } ] }\n",
			wantErr: "failed to load certificate chain and private key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, tc.yaml), "ctx", newSecrets(t, nil))
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v\nwant it to contain %q", err, tc.wantErr)
			}
		})
	}
}
