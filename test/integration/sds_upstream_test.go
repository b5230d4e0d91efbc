package integration

import (
	"crypto/tls"
	"fmt"
	nethttp "net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestUpstreamSDS: a cluster's client certificate and validation context
// come from one filesystem SDS file; rotating the file changes the client
// certificate of new upstream connections.
func TestUpstreamSDS(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	srv := httptest.NewUnstartedServer(nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("Connection", "close")
		fmt.Fprintf(w, "client=%s", r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{f.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: f.roots}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	backend := strings.TrimPrefix(srv.URL, "https://")

	clientSecret := func(cn string) string {
		c := f.sdsCert(t, cn)
		return secretYAML("client_cert", c, "  ")
	}
	caSecret := fmt.Sprintf("  name: ca\n  validation_context:\n    trusted_ca: { filename: %q }\n    match_typed_subject_alt_names: [ { san_type: DNS, matcher: { exact: example.com } } ]\n", f.ca)
	path := filepath.Join(t.TempDir(), "sds.yaml")
	writeAtomic(t, path, sdsResponse("1", clientSecret("first-client"), caSecret))
	cluster := staticCluster("backend", backend) + fmt.Sprintf(`    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: example.com
        max_session_keys: 0
        common_tls_context:
          tls_certificate_sds_secret_configs: [ { name: client_cert, sds_config: { path: %q } } ]
          validation_context_sds_secret_config: { name: ca, sds_config: { path: %q } }
`, path, path)
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: catchAllVhost("backend")})}, cluster))
	addr := "http://" + h.ListenerAddr("web") + "/"
	testutil.Eventually(t, 10*time.Second, func() error {
		code, _, body := get(t, newClient(), addr, "")
		if code != 200 || body != "client=first-client" {
			return fmt.Errorf("got %d %q, want 200 client=first-client", code, body)
		}
		return nil
	})
	writeAtomic(t, path, sdsResponse("2", clientSecret("second-client"), caSecret))
	testutil.Eventually(t, 10*time.Second, func() error {
		code, _, body := get(t, newClient(), addr, "")
		if code != 200 || body != "client=second-client" {
			return fmt.Errorf("got %d %q, want 200 client=second-client", code, body)
		}
		return nil
	})
	waitStat(t, h, "cluster.backend.client_ssl_socket_factory.ssl_context_update_by_sds", 2)
}
