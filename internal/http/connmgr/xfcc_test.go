package connmgr

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/network"
)

// xfccCerts are certificates generated for the XFCC tests.
type xfccCerts struct {
	ca, client, local *x509.Certificate
	caKey, clientKey  *ecdsa.PrivateKey
	localKey          *ecdsa.PrivateKey
}

func newXFCCCert(t testing.TB, tmpl *x509.Certificate, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
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
	return c, key
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// genXFCCCerts makes a CA, a client certificate with the subject of
// Envoy's documented example plus URI and DNS SANs, and herald's own
// certificate with a URI SAN (By).
func genXFCCCerts(t testing.TB) *xfccCerts {
	t.Helper()
	now := time.Now()
	var x xfccCerts
	x.ca, x.caKey = newXFCCCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil, nil)
	x.client, x.clientKey = newXFCCCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject: pkix.Name{
			Country: []string{"US"}, Province: []string{"CA"}, Locality: []string{"San Francisco"},
			OrganizationalUnit: []string{"Lyft"}, CommonName: "Test Client",
		},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		URIs:        []*url.URL{mustURL(t, "spiffe://cluster.local/ns/default/sa/client")},
		DNSNames:    []string{"lyft.com", "www.lyft.com"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, x.ca, x.caKey)
	x.local, x.localKey = newXFCCCert(t, &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "herald"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		URIs:        []*url.URL{mustURL(t, "spiffe://cluster.local/ns/default/sa/herald")},
		DNSNames:    []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, x.ca, x.caKey)
	return &x
}

// wantHash and wantPEM compute the expected Hash and Cert values the way
// Envoy's documentation describes them, independently of xfcc.go.
func wantHash(c *x509.Certificate) string {
	s := sha256.Sum256(c.Raw)
	return hex.EncodeToString(s[:])
}

func wantPEM(c *x509.Certificate) string {
	p := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}))
	return strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(p)
}

func TestXFCCElement(t *testing.T) {
	x := genXFCCCerts(t)
	by := "By=spiffe://cluster.local/ns/default/sa/herald"
	hash := "Hash=" + wantHash(x.client)
	subject := `Subject="CN=Test Client,OU=Lyft,L=San Francisco,ST=CA,C=US"`
	uri := "URI=spiffe://cluster.local/ns/default/sa/client"
	dns := "DNS=lyft.com;DNS=www.lyft.com"
	noSAN, _ := newXFCCCert(t, &x509.Certificate{SerialNumber: big.NewInt(9), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}, x.ca, x.caKey)
	tests := []struct {
		name    string
		local   *x509.Certificate
		chain   []*x509.Certificate
		details ClientCertDetails
		want    string
	}{
		{name: "no details: By and Hash", local: x.local, chain: []*x509.Certificate{x.client}, want: by + ";" + hash},
		{name: "local certificate unknown: no By", chain: []*x509.Certificate{x.client}, want: hash},
		// Envoy's documented example shape: By;Hash;Subject;URI.
		{name: "subject and URI", local: x.local, chain: []*x509.Certificate{x.client}, details: ClientCertSubject | ClientCertURI,
			want: by + ";" + hash + ";" + subject + ";" + uri},
		// Documented: one DNS key per DNS SAN.
		{name: "subject, URI and DNS", local: x.local, chain: []*x509.Certificate{x.client}, details: ClientCertSubject | ClientCertURI | ClientCertDNS,
			want: by + ";" + hash + ";" + subject + ";" + uri + ";" + dns},
		{name: "cert is double-quoted URL-encoded PEM", local: x.local, chain: []*x509.Certificate{x.client}, details: ClientCertCert,
			want: by + ";" + hash + `;Cert="` + wantPEM(x.client) + `"`},
		{name: "chain is every certificate the client sent, leaf first", local: x.local, chain: []*x509.Certificate{x.client, x.ca}, details: ClientCertChain,
			want: by + ";" + hash + `;Chain="` + wantPEM(x.client) + wantPEM(x.ca) + `"`},
		// Envoy's key order is Cert, Chain, Subject, URI, DNS whatever is set.
		{name: "every detail in Envoy's order", local: x.local, chain: []*x509.Certificate{x.client}, details: ClientCertDNS | ClientCertURI | ClientCertSubject | ClientCertChain | ClientCertCert,
			want: by + ";" + hash + `;Cert="` + wantPEM(x.client) + `";Chain="` + wantPEM(x.client) + `";` + subject + ";" + uri + ";" + dns},
		// "The Subject and URI keys still exist even if empty"; DNS does not.
		{name: "empty subject and no SANs", local: x.local, chain: []*x509.Certificate{noSAN}, details: ClientCertSubject | ClientCertURI | ClientCertDNS,
			want: by + ";Hash=" + wantHash(noSAN) + `;Subject="";URI=`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := xfccElement(tc.local, tc.chain, tc.details); got != tc.want {
				t.Errorf("xfccElement =\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

func TestMutateXFCC(t *testing.T) {
	const elem = "By=spiffe://a;Hash=abc;URI=spiffe://b"
	const incoming = "By=spiffe://x;Hash=def"
	mtls := &xfccConn{mtls: true, elem: elem}
	plain := &xfccConn{}
	tests := []struct {
		name     string
		mode     ForwardClientCert
		conn     *xfccConn
		incoming []string
		want     []string // nil: no header
	}{
		{name: "sanitize, mTLS, incoming", mode: ForwardClientCertSanitize, conn: mtls, incoming: []string{incoming}},
		{name: "sanitize, plain, incoming", mode: ForwardClientCertSanitize, conn: plain, incoming: []string{incoming}},
		{name: "sanitize, mTLS, none", mode: ForwardClientCertSanitize, conn: mtls},
		{name: "forward only, mTLS, incoming", mode: ForwardClientCertForwardOnly, conn: mtls, incoming: []string{incoming}, want: []string{incoming}},
		{name: "forward only, mTLS, none", mode: ForwardClientCertForwardOnly, conn: mtls},
		// Envoy: not mutual TLS removes the header in every mode but ALWAYS_FORWARD_ONLY.
		{name: "forward only, plain, incoming", mode: ForwardClientCertForwardOnly, conn: plain, incoming: []string{incoming}},
		{name: "append forward, mTLS, incoming", mode: ForwardClientCertAppendForward, conn: mtls, incoming: []string{incoming}, want: []string{incoming + "," + elem}},
		{name: "append forward, mTLS, none", mode: ForwardClientCertAppendForward, conn: mtls, want: []string{elem}},
		{name: "append forward, mTLS, empty incoming", mode: ForwardClientCertAppendForward, conn: mtls, incoming: []string{""}, want: []string{elem}},
		{name: "append forward, mTLS, two header lines joined", mode: ForwardClientCertAppendForward, conn: mtls, incoming: []string{"Hash=1", "Hash=2"}, want: []string{"Hash=1,Hash=2," + elem}},
		{name: "append forward, plain, incoming", mode: ForwardClientCertAppendForward, conn: plain, incoming: []string{incoming}},
		{name: "append forward, plain, none", mode: ForwardClientCertAppendForward, conn: plain},
		{name: "sanitize set, mTLS, incoming", mode: ForwardClientCertSanitizeSet, conn: mtls, incoming: []string{incoming}, want: []string{elem}},
		{name: "sanitize set, mTLS, none", mode: ForwardClientCertSanitizeSet, conn: mtls, want: []string{elem}},
		{name: "sanitize set, plain, incoming", mode: ForwardClientCertSanitizeSet, conn: plain, incoming: []string{incoming}},
		{name: "always forward only, mTLS, incoming", mode: ForwardClientCertAlwaysForwardOnly, conn: mtls, incoming: []string{incoming}, want: []string{incoming}},
		{name: "always forward only, plain, incoming", mode: ForwardClientCertAlwaysForwardOnly, conn: plain, incoming: []string{incoming}, want: []string{incoming}},
		{name: "always forward only, plain, none", mode: ForwardClientCertAlwaysForwardOnly, conn: plain},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &hhttp.Headers{}
			h.Add(hhttp.Method, "GET")
			for _, v := range tc.incoming {
				h.Add(hdrXForwardedClientCert, v)
			}
			mutateXFCC(h, tc.mode, tc.conn)
			got := h.Values(nil, hdrXForwardedClientCert)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") || len(got) != len(tc.want) {
				t.Errorf("x-forwarded-client-cert = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestSubjectRFC2253(t *testing.T) {
	oidEmail := asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
	oidUnknown := asn1.ObjectIdentifier{1, 2, 3, 4}
	tests := []struct {
		name string
		rdns pkix.RDNSequence
		want string
	}{
		{name: "empty", want: ""},
		{
			name: "documented example, last RDN first",
			rdns: pkix.Name{Country: []string{"US"}, Province: []string{"CA"}, Locality: []string{"San Francisco"}, OrganizationalUnit: []string{"Lyft"}, CommonName: "Test Client"}.ToRDNSequence(),
			want: "CN=Test Client,OU=Lyft,L=San Francisco,ST=CA,C=US",
		},
		{
			name: "special characters escaped",
			rdns: pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: `a,b+c"d\e<f>g;h=i`}}},
			want: `CN=a\,b\+c\"d\\e\<f\>g\;h=i`,
		},
		{
			name: "leading space and hash, trailing space",
			rdns: pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: " #x# "}}, {{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "#y"}}},
			want: `CN=\#y,O=\ #x#\ `,
		},
		{
			name: "non-ASCII as escaped UTF-8 bytes",
			rdns: pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 3}, Value: "José"}}},
			want: `CN=Jos\C3\A9`,
		},
		{
			name: "multi-valued RDN and short names",
			rdns: pkix.RDNSequence{{{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Org"}, {Type: oidEmail, Value: "a@b.c"}}, {{Type: asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}, Value: "example"}}},
			want: "DC=example,O=Org+emailAddress=a@b.c",
		},
		{
			name: "unknown attribute type dumped as hex DER",
			rdns: pkix.RDNSequence{{{Type: oidUnknown, Value: "hi"}}},
			want: "1.2.3.4=#13026869",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := asn1.Marshal(tc.rdns)
			if err != nil {
				t.Fatal(err)
			}
			if got := subjectRFC2253(raw); got != tc.want {
				t.Errorf("subjectRFC2253 = %q, want %q", got, tc.want)
			}
		})
	}
}

// tlsPair handshakes a TLS server over net.Pipe with a client that
// presents clientCerts (none when empty) and returns the server side.
func tlsPair(t *testing.T, x *xfccCerts, clientCerts []tls.Certificate) *tls.Conn {
	t.Helper()
	cs, cc := net.Pipe()
	t.Cleanup(func() { cs.Close(); cc.Close() })
	pool := x509.NewCertPool()
	pool.AddCert(x.ca)
	srv := tls.Server(cs, &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{x.local.Raw}, PrivateKey: x.localKey, Leaf: x.local}},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    pool,
	})
	cli := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: clientCerts})
	errc := make(chan error, 1)
	go func() { errc <- cli.Handshake() }()
	if err := srv.Handshake(); err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("client handshake: %v", err)
	}
	return srv
}

func TestNewXFCCConn(t *testing.T) {
	x := genXFCCCerts(t)
	clientCert := []tls.Certificate{{Certificate: [][]byte{x.client.Raw, x.ca.Raw}, PrivateKey: x.clientKey}}
	mtlsConn := func(t *testing.T) *network.Conn {
		return &network.Conn{Conn: tlsPair(t, x, clientCert), TLS: true, LocalCertificate: x.local}
	}
	tlsOnly := func(t *testing.T) *network.Conn {
		return &network.Conn{Conn: tlsPair(t, x, nil), TLS: true, LocalCertificate: x.local}
	}
	plainConn := func(t *testing.T) *network.Conn {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		return &network.Conn{Conn: a, Remote: netip.MustParseAddrPort("127.0.0.1:1")}
	}
	elem := "By=spiffe://cluster.local/ns/default/sa/herald;Hash=" + wantHash(x.client) + ";URI=spiffe://cluster.local/ns/default/sa/client"
	tests := []struct {
		name string
		conn func(*testing.T) *network.Conn
		mode ForwardClientCert
		want xfccConn
	}{
		{name: "append forward over mTLS builds the element", conn: mtlsConn, mode: ForwardClientCertAppendForward, want: xfccConn{mtls: true, elem: elem}},
		{name: "sanitize set over mTLS builds the element", conn: mtlsConn, mode: ForwardClientCertSanitizeSet, want: xfccConn{mtls: true, elem: elem}},
		{name: "forward only over mTLS needs no element", conn: mtlsConn, mode: ForwardClientCertForwardOnly, want: xfccConn{mtls: true}},
		{name: "sanitize never looks at the connection", conn: mtlsConn, mode: ForwardClientCertSanitize},
		{name: "TLS without a client certificate is not mTLS", conn: tlsOnly, mode: ForwardClientCertAppendForward},
		{name: "plain text", conn: plainConn, mode: ForwardClientCertAppendForward},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &Config{ForwardClientCert: tc.mode, SetClientCertDetails: ClientCertURI}
			if got := cfg.newXFCCConn(tc.conn(t)); got != tc.want {
				t.Errorf("newXFCCConn = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestMutateRequestHeadersXFCC checks the call from mutateRequestHeaders:
// the default (SANITIZE) drops a spoofed header from a plain client.
func TestMutateRequestHeadersXFCC(t *testing.T) {
	cfg := &Config{}
	c := &conn{cfg: cfg, nc: &network.Conn{Remote: netip.MustParseAddrPort("203.0.113.1:5")}}
	c.xfcc = cfg.newXFCCConn(c.nc)
	as := &stream{c: c, cfg: cfg}
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "GET")
	h.Add(hdrXForwardedClientCert, "Hash=spoofed")
	if !as.mutateRequestHeaders(h) {
		t.Fatal("mutateRequestHeaders answered the request")
	}
	if v, ok := h.Lookup(hdrXForwardedClientCert); ok {
		t.Errorf("x-forwarded-client-cert = %q, want removed", v)
	}
}

// BenchmarkMutateXFCCPlain is the plain-text request path: SANITIZE
// (the default) and APPEND_FORWARD on a connection without TLS must not
// allocate.
func BenchmarkMutateXFCCPlain(b *testing.B) {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "GET")
	h.Add(hhttp.Path, "/")
	h.Add("user-agent", "bench")
	x := &xfccConn{}
	b.ReportAllocs()
	for b.Loop() {
		mutateXFCC(h, ForwardClientCertSanitize, x)
		mutateXFCC(h, ForwardClientCertAppendForward, x)
	}
}

// BenchmarkMutateXFCCSet is an mTLS keep-alive request under
// SANITIZE_SET: the element was built once for the connection.
func BenchmarkMutateXFCCSet(b *testing.B) {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "GET")
	x := &xfccConn{mtls: true, elem: "By=spiffe://a;Hash=abc"}
	b.ReportAllocs()
	for b.Loop() {
		mutateXFCC(h, ForwardClientCertSanitizeSet, x)
	}
}

func TestMutateXFCCAllocs(t *testing.T) {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "GET")
	plain, mtls := &xfccConn{}, &xfccConn{mtls: true, elem: "Hash=abc"}
	allocs := testing.AllocsPerRun(100, func() {
		mutateXFCC(h, ForwardClientCertSanitize, plain)
		mutateXFCC(h, ForwardClientCertAppendForward, plain)
		mutateXFCC(h, ForwardClientCertSanitizeSet, mtls)
		h.Del(hdrXForwardedClientCert)
		mutateXFCC(h, ForwardClientCertAppendForward, mtls)
	})
	if allocs != 0 {
		t.Errorf("mutateXFCC allocates %v times per request, want 0", allocs)
	}
}
