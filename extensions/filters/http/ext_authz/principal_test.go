package extauthz

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"net/url"
	"testing"

	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
)

// TestSourcePrincipal: the CheckRequest's source principal comes from the
// downstream client certificate, as Envoy's getPrincipal.
func TestSourcePrincipal(t *testing.T) {
	spiffe, _ := url.Parse("spiffe://example.org/client")
	subject := pkix.Name{CommonName: "client", Organization: []string{"herald"}}
	tests := []struct {
		name string
		tls  bool
		cert *x509.Certificate
		want string
	}{
		{name: "plaintext", want: ""},
		{name: "tls without client certificate", tls: true, want: ""},
		{name: "uri san first", tls: true, cert: &x509.Certificate{URIs: []*url.URL{spiffe}, DNSNames: []string{"c.example.org"}, Subject: subject}, want: "spiffe://example.org/client"},
		{name: "dns san next", tls: true, cert: &x509.Certificate{DNSNames: []string{"c.example.org", "d.example.org"}, Subject: subject}, want: "c.example.org"},
		{name: "subject last", tls: true, cert: &x509.Certificate{Subject: subject}, want: "CN=client,O=herald"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cb := &httpfiltertest.Callbacks{TLS: tc.tls, PeerCert: tc.cert}
			req := (&Config{}).buildCheck(cb, &checkInput{headers: httpfiltertest.Request()})
			if got := req.GetAttributes().GetSource().GetPrincipal(); got != tc.want {
				t.Errorf("source principal = %q, want %q", got, tc.want)
			}
		})
	}
}
