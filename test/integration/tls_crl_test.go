package integration

import (
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
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// crlCA is a client CA that may sign CRLs (genCert's CAs lack the
// cRLSign key usage Go's CreateRevocationList requires).
func crlCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "herald CRL test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// TestTLSCRL: a listener requiring client certificates with a crl refuses
// a revoked client (ssl.fail_verify_error) and serves an unrevoked one;
// its access log carries the client's %TLS_JA3_FINGERPRINT%.
func TestTLSCRL(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	ca, caKey, caPEM := crlCA(t)
	_, _, goodPEM, goodKey := genCert(t, "good client", []string{"good.example.com"}, nil, false, ca, caKey)
	revokedCert, _, revokedPEM, revokedKey := genCert(t, "revoked client", []string{"revoked.example.com"}, nil, false, ca, caKey)
	crlDER, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: revokedCert.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)}},
	}, ca, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := f.write(t, "client-ca.pem", caPEM)
	crlFile := f.write(t, "clients.crl", string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crlDER})))
	logFile := filepath.Join(f.dir, "access.log")
	backend := testutil.NamedBackend(t, "crl")
	listener := fmt.Sprintf(`  - name: crl
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
        enable_ja3_fingerprinting: true
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          require_client_certificate: true
          common_tls_context:
            tls_certificates:
            - certificate_chain: { filename: %q }
              private_key: { filename: %q }
            validation_context:
              trusted_ca: { filename: %q }
              crl: { filename: %q }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: crl
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %q
              log_format: { text_format_source: { inline_string: "ja3=%%TLS_JA3_FINGERPRINT%%\n" } }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            virtual_hosts:
%s
`, f.serverCert, f.serverKey, caFile, crlFile, logFile, catchAllVhost("backend"))
	h := testutil.Start(t, bootstrap([]string{listener}, staticCluster("backend", backend)))
	addr := h.ListenerAddr("crl")
	prefix := statPrefix(addr)
	get := func(cert tls.Certificate) error {
		cfg := &tls.Config{RootCAs: f.roots, ServerName: "example.com", Certificates: []tls.Certificate{cert}}
		resp, err := httpsClient(cfg, false).Get("https://" + addr + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
	t.Run("unrevoked client served", func(t *testing.T) {
		if err := get(mustKeyPair(t, goodPEM, goodKey)); err != nil {
			t.Fatal(err)
		}
		waitStat(t, h, prefix+"ssl.handshake", 1)
		lines := waitLines(t, logFile, 1)
		if !regexp.MustCompile(`^ja3=[0-9a-f]{32}$`).MatchString(lines[0]) {
			t.Fatalf("access log line %q, want ja3=<md5>", lines[0])
		}
	})
	t.Run("revoked client refused", func(t *testing.T) {
		if err := get(mustKeyPair(t, revokedPEM, revokedKey)); err == nil {
			t.Fatal("a revoked client certificate was served")
		}
		waitStat(t, h, prefix+"ssl.fail_verify_error", 1)
		waitStat(t, h, prefix+"ssl.handshake", 1)
	})
}
