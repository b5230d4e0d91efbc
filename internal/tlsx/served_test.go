package tlsx

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/stats"
)

// TestHandshakeServed checks that the server reports the certificate it
// chose (x-forwarded-client-cert's By), not merely the first configured.
func TestHandshakeServed(t *testing.T) {
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
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			errc := make(chan error, 1)
			go func() {
				c := tls.Client(b, &tls.Config{RootCAs: roots, ServerName: "example.com", MaxVersion: tls.VersionTLS12, CipherSuites: tc.suites})
				errc <- c.Handshake()
			}()
			st := NewStats(stats.NewStore().Scope("l."))
			_, leaf, err := srv.HandshakeServed(a, time.Now().Add(5*time.Second), st)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-errc; err != nil {
				t.Fatalf("client: %v", err)
			}
			if leaf == nil {
				t.Fatal("HandshakeServed returned no local certificate")
			}
			if got := leaf.Subject.CommonName; got != tc.want {
				t.Errorf("local certificate = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestWithServedCertificate checks the QUIC listeners' per-connection slot:
// one allocation, the parent's values and cancellation kept, and what
// certificate selection records read back.
func TestWithServedCertificate(t *testing.T) {
	type parentKey struct{}
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), parentKey{}, "v"))
	defer cancel()
	ctx := WithServedCertificate(parent)
	if got := ctx.Value(parentKey{}); got != "v" {
		t.Errorf("parent value = %v, want v", got)
	}
	if got := ServedCertificate(ctx); got != nil {
		t.Errorf("ServedCertificate before a handshake = %v, want nil", got)
	}
	leaf := &x509.Certificate{}
	ctx.Value(servedKey{}).(*servedCert).leaf = leaf
	if got := ServedCertificate(ctx); got != leaf {
		t.Errorf("ServedCertificate = %p, want the recorded %p", got, leaf)
	}
	child, stop := context.WithCancel(ctx)
	defer stop()
	cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the parent did not reach a context derived from the slot")
	}
	var sink context.Context
	if n := testing.AllocsPerRun(100, func() { sink = WithServedCertificate(parent) }); n != 1 {
		t.Errorf("WithServedCertificate allocates %v times, want 1", n)
	}
	_ = sink
}
