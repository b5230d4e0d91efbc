package integration

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	nethttp "net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// xfccCert issues a certificate from parent (self-signed when nil) and
// returns it, its key and PEM forms.
func xfccCert(t *testing.T, tmpl *x509.Certificate, parent *x509.Certificate, parentKey crypto.Signer) (*x509.Certificate, crypto.Signer, string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return c, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd}))
}

func spiffe(t *testing.T, s string) []*url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return []*url.URL{u}
}

// TestXFCC drives x-forwarded-client-cert through the binary: an mTLS
// client through APPEND_FORWARD (subject, URI, DNS, cert) to a backend
// that echoes the header, and the default SANITIZE dropping a header a
// plain client spoofed
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/headers#x-forwarded-client-cert).
func TestXFCC(t *testing.T) {
	t.Parallel()
	f := &tlsFiles{dir: t.TempDir(), roots: x509.NewCertPool()}
	ca, caKey, caPEM, _ := xfccCert(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xfcc CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	f.roots.AddCert(ca)
	caPath := f.write(t, "ca.pem", caPEM)
	_, _, srvPEM, srvKey := xfccCert(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "herald"},
		DNSNames: []string{"example.com"}, URIs: spiffe(t, "spiffe://cluster.local/ns/test/sa/herald"),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, caKey)
	srvCertPath, srvKeyPath := f.write(t, "server.pem", srvPEM), f.write(t, "server.key", srvKey)
	client, _, cliPEM, cliKey := xfccCert(t, &x509.Certificate{SerialNumber: big.NewInt(3),
		Subject:  pkix.Name{CommonName: "xfcc client", Organization: []string{"herald, test"}},
		DNSNames: []string{"client.example.com", "alt.example.com"}, URIs: spiffe(t, "spiffe://cluster.local/ns/test/sa/client"),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, caKey)
	clientPair := mustKeyPair(t, cliPEM, cliKey)

	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		v := r.Header.Values("X-Forwarded-Client-Cert")
		w.Header().Set("X-Seen-Count", fmt.Sprint(len(v)))
		io.WriteString(w, strings.Join(v, "|"))
	}))

	tlsListener := func(name, hcmExtra string) string {
		return fmt.Sprintf(`  - name: %s
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
          common_tls_context:
            alpn_protocols: ["h2", "http/1.1"]
            tls_certificates:
            - certificate_chain: { filename: %q }
              private_key: { filename: %q }
            validation_context:
              trusted_ca: { filename: %q }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %s
%s          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            virtual_hosts:
%s
`, name, srvCertPath, srvKeyPath, caPath, name, hcmExtra, catchAllVhost("backend"))
	}
	appendFwd := `          forward_client_cert_details: APPEND_FORWARD
          set_current_client_cert_details: { subject: true, uri: true, dns: true, cert: true }
`
	plainListener := func(name, hcmExtra string) string {
		return extraHCMListener(hcmSpec{name: name, hcmExtra: hcmExtra, vhosts: catchAllVhost("backend")})
	}
	h := testutil.Start(t, bootstrap([]string{
		tlsListener("mtls_append", appendFwd),
		plainListener("plain_default", ""),
		plainListener("plain_append", appendFwd),
	}, staticCluster("backend", backend)))

	sum := sha256.Sum256(client.Raw)
	certPEM := strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(cliPEM)
	// Envoy's documented element: By;Hash;Cert;Subject;URI;DNS (one DNS key
	// per DNS SAN), the subject in RFC 2253 with "," escaped.
	elem := "By=spiffe://cluster.local/ns/test/sa/herald" +
		";Hash=" + hex.EncodeToString(sum[:]) +
		`;Cert="` + certPEM + `"` +
		`;Subject="CN=xfcc client,O=herald\, test"` +
		";URI=spiffe://cluster.local/ns/test/sa/client" +
		";DNS=client.example.com;DNS=alt.example.com"
	const spoofed = "By=spiffe://elsewhere;Hash=0000"

	tests := []struct {
		name     string
		listener string
		scheme   string
		h2       bool
		certs    []tls.Certificate
		incoming string
		want     string
	}{
		{name: "mTLS HTTP/1.1, no incoming header: the element", listener: "mtls_append", scheme: "https", certs: []tls.Certificate{clientPair}, want: elem},
		{name: "mTLS HTTP/1.1, incoming header: appended after a comma", listener: "mtls_append", scheme: "https", certs: []tls.Certificate{clientPair}, incoming: spoofed, want: spoofed + "," + elem},
		{name: "mTLS HTTP/2, incoming header: appended after a comma", listener: "mtls_append", scheme: "https", h2: true, certs: []tls.Certificate{clientPair}, incoming: spoofed, want: spoofed + "," + elem},
		// Envoy: not mutual TLS removes the header (APPEND_FORWARD too).
		{name: "TLS without a client certificate: removed", listener: "mtls_append", scheme: "https", incoming: spoofed},
		{name: "plain text, APPEND_FORWARD: removed", listener: "plain_append", scheme: "http", incoming: spoofed},
		{name: "plain text, default SANITIZE: spoofed header removed", listener: "plain_default", scheme: "http", incoming: spoofed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &nethttp.Client{Timeout: 10 * time.Second, Transport: &nethttp.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: f.roots, ServerName: "example.com", Certificates: tc.certs},
				ForceAttemptHTTP2: tc.h2,
			}}
			defer c.CloseIdleConnections()
			// Two requests: the second reuses the connection, whose element
			// was computed once.
			for i := 0; i < 2; i++ {
				req, err := nethttp.NewRequest("GET", tc.scheme+"://"+h.ListenerAddr(tc.listener)+"/", nil)
				if err != nil {
					t.Fatal(err)
				}
				if tc.incoming != "" {
					req.Header.Set("X-Forwarded-Client-Cert", tc.incoming)
				}
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: status %d", i, resp.StatusCode)
				}
				if tc.h2 && resp.ProtoMajor != 2 {
					t.Fatalf("request %d: HTTP/%d, want HTTP/2", i, resp.ProtoMajor)
				}
				wantCount := "0"
				if tc.want != "" {
					wantCount = "1"
				}
				if got := string(b); got != tc.want || resp.Header.Get("X-Seen-Count") != wantCount {
					t.Errorf("request %d: backend saw %s header(s) x-forwarded-client-cert:\n%q\nwant %s:\n%q", i, resp.Header.Get("X-Seen-Count"), got, wantCount, tc.want)
				}
			}
		})
	}
}
