package quic

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	quicv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/quic/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/listener"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
)

func testContext(t *testing.T, alpn ...string) *tlsv3.DownstreamTlsContext {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{"example.com"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	inline := func(s []byte) *corev3.DataSource {
		return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: string(s)}}
	}
	return &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
		AlpnProtocols: alpn,
		TlsCertificates: []*tlsv3.TlsCertificate{{
			CertificateChain: inline(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
			PrivateKey:       inline(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})),
		}},
	}}
}

func TestBuildDownstream(t *testing.T) {
	tests := []struct {
		name        string
		cfg         func(t *testing.T) *quicv3.QuicDownstreamTransport
		wantTickets bool
		// wantNoEarly: resumed sessions lose their 0-RTT permission.
		wantNoEarly bool
		wantErr     string
	}{
		{name: "defaults: TLS 1.3, h3, tickets on, early data on", wantTickets: true,
			cfg: func(t *testing.T) *quicv3.QuicDownstreamTransport {
				return &quicv3.QuicDownstreamTransport{DownstreamTlsContext: testContext(t)}
			}},
		// alpn_protocols of the TLS context do not apply to QUIC.
		{name: "h3 whatever alpn_protocols says", wantTickets: true,
			cfg: func(t *testing.T) *quicv3.QuicDownstreamTransport {
				return &quicv3.QuicDownstreamTransport{DownstreamTlsContext: testContext(t, "h2", "http/1.1")}
			}},
		{name: "enable_resumption false", wantNoEarly: true,
			cfg: func(t *testing.T) *quicv3.QuicDownstreamTransport {
				return &quicv3.QuicDownstreamTransport{DownstreamTlsContext: testContext(t), EnableResumption: wrapperspb.Bool(false)}
			}},
		{name: "enable_early_data true", wantTickets: true,
			cfg: func(t *testing.T) *quicv3.QuicDownstreamTransport {
				return &quicv3.QuicDownstreamTransport{DownstreamTlsContext: testContext(t), EnableEarlyData: wrapperspb.Bool(true)}
			}},
		{name: "enable_early_data false", wantTickets: true, wantNoEarly: true,
			cfg: func(t *testing.T) *quicv3.QuicDownstreamTransport {
				return &quicv3.QuicDownstreamTransport{DownstreamTlsContext: testContext(t), EnableEarlyData: wrapperspb.Bool(false)}
			}},
		// Envoy: the default is false when client certificates are validated.
		{name: "early data off by default with a validation context", wantTickets: true, wantNoEarly: true,
			cfg: func(t *testing.T) *quicv3.QuicDownstreamTransport {
				c := testContext(t)
				c.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{}}
				return &quicv3.QuicDownstreamTransport{DownstreamTlsContext: c}
			}},
		{name: "enable_early_data needs resumption", wantErr: "p.enable_early_data: enable_early_data requires enable_resumption",
			cfg: func(t *testing.T) *quicv3.QuicDownstreamTransport {
				return &quicv3.QuicDownstreamTransport{DownstreamTlsContext: testContext(t), EnableEarlyData: wrapperspb.Bool(true), EnableResumption: wrapperspb.Bool(false)}
			}},
		{name: "downstream_tls_context required", wantErr: "p.downstream_tls_context: downstream_tls_context is required",
			cfg: func(*testing.T) *quicv3.QuicDownstreamTransport { return &quicv3.QuicDownstreamTransport{} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := buildDownstream(tc.cfg(t), transportsocket.BuildContext{Path: "p"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			qt, ok := d.(listener.QUICTransport)
			if !ok {
				t.Fatalf("%T does not implement listener.QUICTransport", d)
			}
			c := qt.QUICTLSConfig()
			if c.MinVersion != tls.VersionTLS13 || c.MaxVersion != tls.VersionTLS13 {
				t.Errorf("versions %x-%x, want TLS 1.3 only", c.MinVersion, c.MaxVersion)
			}
			if len(c.NextProtos) != 1 || c.NextProtos[0] != "h3" {
				t.Errorf("NextProtos = %q, want [h3]", c.NextProtos)
			}
			if c.GetConfigForClient != nil {
				t.Error("GetConfigForClient is set: the no-ALPN fallback must not apply to QUIC")
			}
			if c.SessionTicketsDisabled == tc.wantTickets {
				t.Errorf("SessionTicketsDisabled = %v, want %v", c.SessionTicketsDisabled, !tc.wantTickets)
			}
			if got := c.UnwrapSession != nil; got != tc.wantNoEarly {
				t.Errorf("early data refused = %v, want %v", got, tc.wantNoEarly)
			}
			if tc.wantNoEarly {
				ss := &tls.SessionState{EarlyData: true}
				// Without tickets (enable_resumption false) wrapping fails
				// after the permission is dropped; only the flag matters.
				_, _ = c.WrapSession(tls.ConnectionState{}, ss)
				if ss.EarlyData {
					t.Error("WrapSession kept the ticket's early-data permission")
				}
			}
			if again := qt.QUICTLSConfig(); again != c {
				t.Error("QUICTLSConfig derived a new config for the same context")
			}
		})
	}
}
