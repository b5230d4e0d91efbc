package tlsx

import (
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"strings"
	"testing"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/stats"
)

// selectorCerts are certificates for several names and key types, each
// with its common name as its label.
type selectorCerts struct {
	rsaDefault, ecA, rsaA, ecWild384, cnOnly, ipOnly, rsaDup, ecWild *testCert
}

func newSelectorCerts(t *testing.T) *selectorCerts {
	t.Helper()
	return &selectorCerts{
		rsaDefault: newCert(t, certOpts{cn: "rsa default", dns: []string{"default.example.com"}, rsa: true}),
		ecA:        newCert(t, certOpts{cn: "ec a", dns: []string{"a.example.com"}}),
		rsaA:       newCert(t, certOpts{cn: "rsa a", dns: []string{"a.example.com"}, rsa: true}),
		ecWild384:  newCert(t, certOpts{cn: "ec wild b p384", dns: []string{"*.b.example.com"}, curve: elliptic.P384()}),
		// No subjectAltName: selected by its common name.
		cnOnly: newCert(t, certOpts{cn: "cn.example.com"}),
		// An IP SAN only: the common name is not a server name then.
		ipOnly: newCert(t, certOpts{cn: "ip.example.com", ips: []net.IP{net.IPv4(127, 0, 0, 1)}}),
		// A second RSA certificate for a.example.com: the first keeps it.
		rsaDup: newCert(t, certOpts{cn: "rsa dup", dns: []string{"a.example.com", "dup.example.com"}, rsa: true}),
		ecWild: newCert(t, certOpts{cn: "ec wild", dns: []string{"*.example.com"}}),
	}
}

func selectorOf(t *testing.T, p params, fullScan bool, certs ...*testCert) *certSelector {
	t.Helper()
	kps := make([]tls.Certificate, len(certs))
	for i, c := range certs {
		kps[i] = keyPair(t, c)
	}
	return newCertSelector(kps, make([]*ocspResponse, len(certs)), p, fullScan, tlsv3.DownstreamTlsContext_LENIENT_STAPLING)
}

func leafName(e *certEntry) string { return e.plain.Leaf.Subject.CommonName }

// TestFindCertificate follows Envoy's findTlsContext
// (source/common/tls/default_tls_certificate_selector.cc) in both modes of
// full_scan_certs_on_sni_mismatch.
func TestFindCertificate(t *testing.T) {
	c := newSelectorCerts(t)
	serverParams := params{max: tls.VersionTLS13, ciphers: defaultCipherSuites}
	all := []*testCert{c.rsaDefault, c.ecA, c.rsaA, c.ecWild384, c.cnOnly, c.ipOnly, c.rsaDup, c.ecWild}
	// ecFirst has an ECDSA default certificate and one RSA certificate.
	ecFirst := []*testCert{c.ecA, c.rsaDefault}
	const (
		none = curveSet(0)
		p256 = curveP256
		p384 = curveP384
	)
	tests := []struct {
		name     string
		certs    []*testCert
		fullScan bool
		sni      string
		curves   curveSet
		want     string
	}{
		{name: "exact name, ECDSA client", certs: all, sni: "a.example.com", curves: p256, want: "ec a"},
		{name: "exact name, RSA-only client", certs: all, sni: "a.example.com", curves: none, want: "rsa a"},
		// The ECDSA certificate's curve is not the client's: the RSA one
		// stood by as the candidate.
		{name: "exact name, ECDSA client without the curve", certs: all, sni: "a.example.com", curves: p384, want: "rsa a"},
		{name: "exact name beats the wildcard", certs: all, sni: "a.example.com", curves: p256, fullScan: true, want: "ec a"},
		{name: "wildcard", certs: all, sni: "x.b.example.com", curves: p384, want: "ec wild b p384"},
		// "*.example.com" covers one label: x.y.b.example.com only tries
		// ".y.b.example.com".
		{name: "wildcard covers one label only", certs: all, sni: "x.y.b.example.com", curves: p256, want: "rsa default"},
		{name: "wildcard match with the wrong key type falls to the default", certs: all, sni: "x.b.example.com", curves: none, want: "rsa default"},
		{name: "common name without SANs", certs: all, sni: "cn.example.com", curves: p256, want: "cn.example.com"},
		{name: "common name ignored when there are SANs", certs: all, sni: "ip.example.com", curves: none, want: "rsa default"},
		{name: "duplicate name keeps the first of its key type", certs: all, sni: "a.example.com", curves: none, want: "rsa a"},
		{name: "second name of a certificate", certs: all, sni: "dup.example.com", curves: none, want: "rsa dup"},
		{name: "names are case-sensitive as in Envoy's map", certs: all, sni: "A.example.com", curves: none, want: "rsa default"},
		{name: "no SNI, ECDSA client: full scan", certs: all, curves: p256, want: "ec a"},
		{name: "no SNI, P-384 client: full scan", certs: all, curves: p384, want: "ec wild b p384"},
		{name: "no SNI, RSA-only client: full scan", certs: all, curves: none, want: "rsa default"},
		{name: "no SNI, RSA-only client, no RSA certificate: the first", certs: []*testCert{c.ecA, c.ecWild}, curves: none, want: "ec a"},
		// SNI mismatch: the first certificate without full scan, whatever
		// the client supports.
		{name: "mismatch without full scan: the first certificate", certs: ecFirst, sni: "nomatch.test", curves: none, want: "ec a"},
		{name: "mismatch with full scan: a compatible certificate", certs: ecFirst, fullScan: true, sni: "nomatch.test", curves: none, want: "rsa default"},
		{name: "mismatch with full scan, ECDSA client", certs: all, fullScan: true, sni: "nomatch.test", curves: p384, want: "ec wild b p384"},
		{name: "mismatch without full scan, ECDSA client", certs: all, sni: "nomatch.test", curves: p384, want: "rsa default"},
		// The exact name's certificate is ECDSA only and the client is
		// RSA-only: that is a mismatch too.
		{name: "name known for another key type, full scan", certs: ecFirst, fullScan: true, sni: "a.example.com", curves: none, want: "rsa default"},
		{name: "name known for another key type, no full scan", certs: ecFirst, sni: "a.example.com", curves: none, want: "ec a"},
		// "a." has no parent domain to try.
		{name: "trailing dot only", certs: all, sni: "a.", curves: p256, want: "rsa default"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := selectorOf(t, serverParams, tc.fullScan, tc.certs...)
			e, action := s.find(tc.sni, tc.curves, false)
			if got := leafName(e); got != tc.want {
				t.Errorf("find(%q) = %q, want %q", tc.sni, got, tc.want)
			}
			if action != stapleClientNotCapable {
				t.Errorf("action = %d, want stapleClientNotCapable", action)
			}
		})
	}
}

// TestClientECDSACurves follows Envoy's getClientEcdsaCapabilities.
func TestClientECDSACurves(t *testing.T) {
	tls13 := params{max: tls.VersionTLS13, ciphers: defaultCipherSuites}
	tls12 := params{max: tls.VersionTLS12, ciphers: defaultCipherSuites}
	rsaOnly := params{max: tls.VersionTLS12, ciphers: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}}
	withCBC := params{max: tls.VersionTLS12, ciphers: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}
	tests := []struct {
		name  string
		p     params
		hello tls.ClientHelloInfo
		want  curveSet
	}{
		{
			// supported_versions sent: the signature algorithms decide,
			// even when only RSA suites are offered.
			name: "TLS 1.3 client by its signature algorithms", p: tls13,
			hello: tls.ClientHelloInfo{
				Extensions: []uint16{supportedVersionsExtension, 13}, SupportedVersions: []uint16{tls.VersionTLS13, tls.VersionTLS12},
				SignatureSchemes: []tls.SignatureScheme{tls.PSSWithSHA256, tls.ECDSAWithP384AndSHA384},
				SupportedCurves:  []tls.CurveID{tls.CurveP256}, CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
			},
			want: curveP384,
		},
		{
			name: "TLS 1.3 client without ECDSA signature algorithms", p: tls13,
			hello: tls.ClientHelloInfo{
				Extensions: []uint16{supportedVersionsExtension}, SignatureSchemes: []tls.SignatureScheme{tls.PSSWithSHA256},
				SupportedCurves: []tls.CurveID{tls.CurveP256}, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			},
			want: 0,
		},
		{
			// The context stops at TLS 1.2: supported groups and suites.
			name: "supported_versions ignored when the context stops at TLS 1.2", p: tls12,
			hello: tls.ClientHelloInfo{
				Extensions: []uint16{supportedVersionsExtension}, SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256},
				SupportedCurves: []tls.CurveID{tls.X25519, tls.CurveP256, tls.CurveP521}, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			},
			want: curveP256 | curveP521,
		},
		{
			name: "TLS 1.2 client without an ECDSA suite", p: tls13,
			hello: tls.ClientHelloInfo{
				SupportedVersions: []uint16{tls.VersionTLS12}, SupportedCurves: []tls.CurveID{tls.CurveP256},
				CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256},
			},
			want: 0,
		},
		{
			name: "TLS 1.2 client whose ECDSA suite the context does not enable", p: rsaOnly,
			hello: tls.ClientHelloInfo{
				SupportedVersions: []uint16{tls.VersionTLS12}, SupportedCurves: []tls.CurveID{tls.CurveP256},
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			},
			want: 0,
		},
		{
			name: "TLS 1.2 client without ECDSA curves", p: tls13,
			hello: tls.ClientHelloInfo{
				SupportedVersions: []uint16{tls.VersionTLS12}, SupportedCurves: []tls.CurveID{tls.X25519},
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			},
			want: 0,
		},
		{
			// A TLS 1.2-only suite is skipped for a TLS 1.0 client.
			name: "TLS 1.0 client with a TLS 1.2 suite", p: tls13,
			hello: tls.ClientHelloInfo{
				SupportedVersions: []uint16{tls.VersionTLS10}, SupportedCurves: []tls.CurveID{tls.CurveP256},
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
			},
			want: 0,
		},
		{
			name: "TLS 1.0 client with a CBC suite", p: withCBC,
			hello: tls.ClientHelloInfo{
				SupportedVersions: []uint16{tls.VersionTLS10}, SupportedCurves: []tls.CurveID{tls.CurveP384},
				CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA},
			},
			want: curveP384,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newCertSelector(nil, nil, tc.p, false, tlsv3.DownstreamTlsContext_LENIENT_STAPLING)
			if got := s.clientECDSACurves(&tc.hello); got != tc.want {
				t.Errorf("clientECDSACurves = %03b, want %03b", got, tc.want)
			}
		})
	}
}

// TestFullScanHandshake runs real handshakes: a client whose SNI no
// certificate matches gets the first certificate unless
// full_scan_certs_on_sni_mismatch is set, when it gets the ECDSA one it
// prefers.
func TestFullScanHandshake(t *testing.T) {
	c := newSelectorCerts(t)
	certYAML := func(tc *testCert) string {
		return fmt.Sprintf("  - certificate_chain: { inline_string: %q }\n    private_key: { inline_string: %q }\n", tc.certPEM, tc.keyPEM)
	}
	tests := []struct {
		name  string
		extra string
		sni   string
		want  string
	}{
		{name: "default: no full scan", sni: "nomatch.test", want: "rsa default"},
		{name: "full scan off explicitly", extra: "full_scan_certs_on_sni_mismatch: false\n", sni: "nomatch.test", want: "rsa default"},
		{name: "full scan", extra: "full_scan_certs_on_sni_mismatch: true\n", sni: "nomatch.test", want: "ec a"},
		{name: "SNI match needs no scan", sni: "x.b.example.com", want: "ec wild b p384"},
		{name: "no SNI scans", want: "ec a"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := "common_tls_context:\n  tls_certificates:\n" + certYAML(c.rsaDefault) + certYAML(c.ecA) + certYAML(c.ecWild384) + tc.extra
			srv, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, y), "ctx", nil)
			if err != nil {
				t.Fatal(err)
			}
			st := NewStats(stats.NewStore().Scope("l."))
			cs, err := handshake(t, srv, st, &tls.Config{InsecureSkipVerify: true, ServerName: tc.sni})
			if err != nil {
				t.Fatal(err)
			}
			if got := cs.PeerCertificates[0].Subject.CommonName; got != tc.want {
				t.Errorf("certificate = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServerNames(t *testing.T) {
	c := newSelectorCerts(t)
	tests := []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{name: "DNS SANs", cert: c.rsaDup.cert, want: "a.example.com,dup.example.com"},
		{name: "common name without SAN extension", cert: c.cnOnly.cert, want: "cn.example.com"},
		{name: "SAN extension without DNS names", cert: c.ipOnly.cert, want: ""},
		// Envoy takes the first CN (X509_NAME_get_index_by_NID from -1).
		{name: "first of two common names", cert: &x509.Certificate{Subject: pkix.Name{CommonName: "second.example.com", Names: []pkix.AttributeTypeAndValue{
			{Type: oidCommonName, Value: "first.example.com"}, {Type: oidCommonName, Value: "second.example.com"}}}}, want: "first.example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := strings.Join(serverNames(tc.cert), ","); got != tc.want {
				t.Errorf("serverNames = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestSelectionAllocs: certificate selection runs on every handshake and
// allocates nothing; the stats context is built once per Stats, not per
// handshake.
func TestSelectionAllocs(t *testing.T) {
	c := newSelectorCerts(t)
	s := selectorOf(t, params{max: tls.VersionTLS13, ciphers: defaultCipherSuites}, true,
		c.rsaDefault, c.ecA, c.rsaA, c.ecWild384, c.cnOnly, c.ipOnly, c.rsaDup, c.ecWild)
	st := NewStats(stats.NewStore().Scope("l."))
	// A TLS 1.3 client without status_request: getCertificate does not
	// look at the handshake context, so a bare ClientHelloInfo will do.
	hello := &tls.ClientHelloInfo{
		ServerName: "nomatch.test", Extensions: []uint16{supportedVersionsExtension},
		SupportedVersions: []uint16{tls.VersionTLS13}, SignatureSchemes: []tls.SignatureScheme{tls.ECDSAWithP384AndSHA384},
	}
	tests := []struct {
		name string
		run  func()
	}{
		{name: "find, SNI mismatch with full scan, OCSP-capable", run: func() { s.find("nomatch.test", curveP384, true) }},
		{name: "find, wildcard", run: func() { s.find("x.b.example.com", curveP256, false) }},
		{name: "getCertificate, client not OCSP-capable", run: func() { _, _ = s.getCertificate(hello) }},
		{name: "handshake context", run: func() { _ = st.handshakeContext() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tc.run); n != 0 {
				t.Errorf("%v allocations per run, want 0", n)
			}
		})
	}
}
