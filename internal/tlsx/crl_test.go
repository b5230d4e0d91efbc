package tlsx

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/stats"
)

// newCRL issues a CRL from issuer revoking revoked; nextUpdate zero means
// an hour from now.
func newCRL(t *testing.T, issuer *testCert, nextUpdate time.Time, revoked ...*testCert) string {
	t.Helper()
	if nextUpdate.IsZero() {
		nextUpdate = time.Now().Add(time.Hour)
	}
	tmpl := &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now().Add(-2 * time.Hour), NextUpdate: nextUpdate}
	for _, r := range revoked {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: r.cert.SerialNumber, RevocationTime: time.Now().Add(-time.Hour)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, issuer.cert, issuer.key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

// chainPair is leaf's key pair sending its intermediates too.
func chainPair(t *testing.T, leaf *testCert, intermediates ...*testCert) tls.Certificate {
	kp := keyPair(t, leaf)
	for _, c := range intermediates {
		kp.Certificate = append(kp.Certificate, c.cert.Raw)
	}
	return kp
}

func TestCRL(t *testing.T) {
	p := newPKI(t)
	inter := newCert(t, certOpts{cn: "intermediate", isCA: true, parent: p.ca})
	leaf := newCert(t, certOpts{cn: "leaf", dns: []string{"leaf.example.com"}, parent: inter})
	revokedLeaf := newCert(t, certOpts{cn: "revoked leaf", parent: inter})
	revoked := newCert(t, certOpts{cn: "revoked", parent: p.ca})
	roots := x509.NewCertPool()
	roots.AddCert(p.ca.cert)
	vc := func(crl string, extra string) string {
		return fmt.Sprintf("  validation_context: { trusted_ca: { inline_string: %q }, crl: { inline_string: %q }%s }\nrequire_client_certificate: true\n", p.ca.certPEM, crl, extra)
	}
	tests := []struct {
		name      string
		extra     string
		cert      tls.Certificate
		wantErr   bool
		wantStats map[string]uint64
	}{
		{name: "unrevoked client accepted", extra: vc(newCRL(t, p.ca, time.Time{}, revoked), ""), cert: keyPair(t, p.client),
			wantStats: map[string]uint64{"handshake": 1, "fail_verify_error": 0}},
		{name: "revoked client refused", extra: vc(newCRL(t, p.ca, time.Time{}, revoked), ""), cert: keyPair(t, revoked), wantErr: true,
			wantStats: map[string]uint64{"handshake": 0, "fail_verify_error": 1, "connection_error": 1}},
		// Envoy: a CRL must be provided for every CA of the chain.
		{name: "intermediate without its CRL refused", extra: vc(newCRL(t, inter, time.Time{}), ""), cert: chainPair(t, leaf, inter), wantErr: true,
			wantStats: map[string]uint64{"fail_verify_error": 1}},
		{name: "CRLs for the whole chain", extra: vc(newCRL(t, inter, time.Time{})+newCRL(t, p.ca, time.Time{}), ""), cert: chainPair(t, leaf, inter),
			wantStats: map[string]uint64{"handshake": 1}},
		{name: "revoked intermediate refused", extra: vc(newCRL(t, inter, time.Time{})+newCRL(t, p.ca, time.Time{}, inter), ""), cert: chainPair(t, leaf, inter), wantErr: true,
			wantStats: map[string]uint64{"fail_verify_error": 1}},
		{name: "only_verify_leaf_cert_crl needs only the leaf's CRL", extra: vc(newCRL(t, inter, time.Time{}), ", only_verify_leaf_cert_crl: true"), cert: chainPair(t, leaf, inter),
			wantStats: map[string]uint64{"handshake": 1}},
		{name: "only_verify_leaf_cert_crl ignores a revoked intermediate", extra: vc(newCRL(t, inter, time.Time{})+newCRL(t, p.ca, time.Time{}, inter), ", only_verify_leaf_cert_crl: true"),
			cert: chainPair(t, leaf, inter), wantStats: map[string]uint64{"handshake": 1}},
		{name: "only_verify_leaf_cert_crl revoked leaf refused", extra: vc(newCRL(t, inter, time.Time{}, revokedLeaf), ", only_verify_leaf_cert_crl: true"),
			cert: chainPair(t, revokedLeaf, inter), wantErr: true, wantStats: map[string]uint64{"fail_verify_error": 1}},
		// OpenSSL: X509_V_ERR_CRL_HAS_EXPIRED.
		{name: "expired CRL refused", extra: vc(newCRL(t, p.ca, time.Now().Add(-time.Minute)), ""), cert: keyPair(t, p.client), wantErr: true,
			wantStats: map[string]uint64{"fail_verify_error": 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, serverYAML(p, tc.extra)), "ctx", nil)
			if err != nil {
				t.Fatal(err)
			}
			store := stats.NewStore()
			st := NewStats(store.Scope("listener.x."))
			_, err = handshake(t, srv, st, &tls.Config{RootCAs: roots, ServerName: "example.com", Certificates: []tls.Certificate{tc.cert}})
			if (err != nil) != tc.wantErr {
				t.Fatalf("server handshake error = %v, want error: %v", err, tc.wantErr)
			}
			for name, want := range tc.wantStats {
				if got := store.Counter("listener.x.ssl." + name).Value(); got != want {
					t.Errorf("ssl.%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

func TestCRLConfigErrors(t *testing.T) {
	p := newPKI(t)
	tests := []struct {
		name    string
		extra   string
		wantErr string
	}{
		{name: "CRL without trusted_ca", extra: fmt.Sprintf("  validation_context: { crl: { inline_string: %q } }\n", newCRL(t, p.ca, time.Time{})),
			wantErr: "ctx.common_tls_context.validation_context.crl: a CRL needs trusted_ca"},
		{name: "no CRL in the data source", extra: fmt.Sprintf("  validation_context: { trusted_ca: { inline_string: %q }, crl: { inline_string: %q } }\n", p.ca.certPEM, p.ca.certPEM),
			wantErr: `ctx.common_tls_context.validation_context.crl: no PEM CRL ("X509 CRL" block) found`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, serverYAML(p, tc.extra)), "ctx", nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
