package tlsx

import (
	"bytes"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"golang.org/x/crypto/ocsp"

	"github.com/herald-proxy/herald/internal/stats"
)

// ocspDER signs an OCSP response for leaf's serial number with ca; a zero
// nextUpdate leaves the field out.
func ocspDER(t *testing.T, ca *testCert, serial *big.Int, nextUpdate time.Time) []byte {
	t.Helper()
	der, err := ocsp.CreateResponse(ca.cert, ca.cert, ocsp.Response{
		Status:       ocsp.Good,
		SerialNumber: serial,
		ThisUpdate:   time.Now().Add(-time.Hour),
		NextUpdate:   nextUpdate,
	}, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// mustStapleExt is the TLS feature extension listing status_request.
var mustStapleExt = pkix.Extension{Id: oidTLSFeature, Value: mustStapleValue}

// stapledCertYAML is one tls_certificates entry with staple as
// inline_bytes (none when nil).
func stapledCertYAML(c *testCert, staple []byte) string {
	y := fmt.Sprintf("  - certificate_chain: { inline_string: %q }\n    private_key: { inline_string: %q }\n", c.certPEM, c.keyPEM)
	if staple != nil {
		y += "    ocsp_staple: { inline_bytes: " + base64.StdEncoding.EncodeToString(staple) + " }\n"
	}
	return y
}

func TestParseOCSPResponse(t *testing.T) {
	ca := newCert(t, certOpts{cn: "ocsp ca", isCA: true})
	next := time.Now().Add(time.Hour).Truncate(time.Second)
	good := ocspDER(t, ca, big.NewInt(42), next)
	tests := []struct {
		name     string
		der      []byte
		wantNext time.Time
		wantErr  string
	}{
		{name: "good", der: good, wantNext: next},
		{name: "without nextUpdate", der: ocspDER(t, ca, big.NewInt(42), time.Time{})},
		{name: "unsuccessful", der: ocsp.InternalErrorErrorResponse, wantErr: "OCSP response was unsuccessful"},
		{name: "not DER", der: []byte("abcd"), wantErr: "not a well-formed ASN.1 SEQUENCE"},
		{name: "trailing data", der: append(append([]byte(nil), good...), 0x30, 0x00), wantErr: "more than a single OCSP response"},
		{name: "truncated", der: good[:len(good)-10], wantErr: "not a well-formed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := parseOCSPResponse(tc.der)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.serial.Int64() != 42 {
				t.Errorf("serial = %v, want 42", r.serial)
			}
			if !r.nextUpdate.Equal(tc.wantNext) {
				t.Errorf("nextUpdate = %v, want %v", r.nextUpdate, tc.wantNext)
			}
			if !bytes.Equal(r.der, tc.der) {
				t.Error("der not kept")
			}
		})
	}
}

// TestOCSPStapleConfig: the load-time errors of Envoy's ServerContextImpl
// and TlsCertificateConfigImpl, with the field path.
func TestOCSPStapleConfig(t *testing.T) {
	ca := newCert(t, certOpts{cn: "ocsp ca", isCA: true})
	leaf := newCert(t, certOpts{cn: "leaf", dns: []string{"example.com"}, parent: ca})
	mustStaple := newCert(t, certOpts{cn: "must staple", dns: []string{"example.com"}, parent: ca, exts: []pkix.Extension{mustStapleExt}})
	valid := ocspDER(t, ca, leaf.cert.SerialNumber, time.Now().Add(time.Hour))
	other := ocspDER(t, ca, new(big.Int).Add(leaf.cert.SerialNumber, big.NewInt(1)), time.Now().Add(time.Hour))
	expired := ocspDER(t, ca, leaf.cert.SerialNumber, time.Now().Add(-time.Minute))
	tests := []struct {
		name    string
		yaml    string
		wantErr string
	}{
		{name: "valid staple", yaml: stapledCertYAML(leaf, valid)},
		// An expired response loads; the policy decides per handshake.
		{name: "expired staple loads", yaml: stapledCertYAML(leaf, expired) + "ocsp_staple_policy: STRICT_STAPLING\n"},
		{name: "staple for another certificate", yaml: stapledCertYAML(leaf, other),
			wantErr: "ctx.common_tls_context.tls_certificates[0].ocsp_staple: OCSP response does not match its TLS certificate"},
		{name: "not an OCSP response", yaml: stapledCertYAML(leaf, []byte("abcd")),
			wantErr: "ctx.common_tls_context.tls_certificates[0].ocsp_staple: OCSP Response is not a well-formed ASN.1 SEQUENCE"},
		{name: "unsuccessful response", yaml: stapledCertYAML(leaf, ocsp.InternalErrorErrorResponse),
			wantErr: "tls_certificates[0].ocsp_staple: OCSP response was unsuccessful"},
		{name: "inline_string refused",
			yaml:    stapledCertYAML(leaf, nil) + "    ocsp_staple: { inline_string: abcd }\n",
			wantErr: "tls_certificates[0].ocsp_staple.inline_string: OCSP staple cannot be provided via inline_string"},
		{name: "must-staple certificate without a staple", yaml: stapledCertYAML(mustStaple, nil),
			wantErr: "tls_certificates[0]: OCSP response is required for must-staple certificate"},
		{name: "MUST_STAPLE without a staple", yaml: stapledCertYAML(leaf, nil) + "ocsp_staple_policy: MUST_STAPLE\n",
			wantErr: "tls_certificates[0]: Required OCSP response is missing from TLS context"},
		{name: "second certificate checked", yaml: stapledCertYAML(leaf, valid) + stapledCertYAML(leaf, other),
			wantErr: "tls_certificates[1].ocsp_staple: OCSP response does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := "common_tls_context:\n  tls_certificates:\n" + tc.yaml
			_, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, y), "ctx", nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("BuildServer: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("BuildServer err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

// TestOCSPStapling: what a client that asks for a staple (Go's always
// does) receives under each ocsp_staple_policy, and the stats (Envoy's
// DefaultTlsCertificateSelector::ocspStapleAction).
func TestOCSPStapling(t *testing.T) {
	ca := newCert(t, certOpts{cn: "ocsp ca", isCA: true})
	leaf := newCert(t, certOpts{cn: "leaf", dns: []string{"example.com"}, parent: ca})
	leaf2 := newCert(t, certOpts{cn: "leaf2", dns: []string{"example.com"}, parent: ca})
	mustStaple := newCert(t, certOpts{cn: "must staple", dns: []string{"example.com"}, parent: ca, exts: []pkix.Extension{mustStapleExt}})
	valid := ocspDER(t, ca, leaf.cert.SerialNumber, time.Now().Add(time.Hour))
	valid2 := ocspDER(t, ca, leaf2.cert.SerialNumber, time.Now().Add(time.Hour))
	expired := ocspDER(t, ca, leaf.cert.SerialNumber, time.Now().Add(-time.Minute))
	noNext := ocspDER(t, ca, leaf.cert.SerialNumber, time.Time{})
	mustValid := ocspDER(t, ca, mustStaple.cert.SerialNumber, time.Now().Add(time.Hour))
	mustExpired := ocspDER(t, ca, mustStaple.cert.SerialNumber, time.Now().Add(-time.Minute))
	type counts struct{ requests, responses, omitted, failed uint64 }
	tests := []struct {
		name       string
		certs      string
		policy     string
		wantStaple []byte
		wantCert   string
		wantErr    bool
		want       counts
	}{
		{name: "lenient, valid", certs: stapledCertYAML(leaf, valid), wantStaple: valid, want: counts{requests: 1, responses: 1}},
		{name: "lenient, expired", certs: stapledCertYAML(leaf, expired), want: counts{requests: 1, omitted: 1}},
		// No nextUpdate counts as expired in Envoy.
		{name: "lenient, no nextUpdate", certs: stapledCertYAML(leaf, noNext), want: counts{requests: 1, omitted: 1}},
		{name: "lenient, none", certs: stapledCertYAML(leaf, nil), want: counts{requests: 1, omitted: 1}},
		{name: "strict, valid", certs: stapledCertYAML(leaf, valid), policy: "STRICT_STAPLING", wantStaple: valid, want: counts{requests: 1, responses: 1}},
		{name: "strict, expired fails", certs: stapledCertYAML(leaf, expired), policy: "STRICT_STAPLING", wantErr: true, want: counts{requests: 1, failed: 1}},
		{name: "strict, none", certs: stapledCertYAML(leaf, nil), policy: "STRICT_STAPLING", want: counts{requests: 1, omitted: 1}},
		{name: "must staple, valid", certs: stapledCertYAML(leaf, valid), policy: "MUST_STAPLE", wantStaple: valid, want: counts{requests: 1, responses: 1}},
		{name: "must staple, expired fails", certs: stapledCertYAML(leaf, expired), policy: "MUST_STAPLE", wantErr: true, want: counts{requests: 1, failed: 1}},
		// The certificate's must-staple extension upgrades the policy.
		{name: "must-staple certificate, lenient, valid", certs: stapledCertYAML(mustStaple, mustValid), wantStaple: mustValid, want: counts{requests: 1, responses: 1}},
		{name: "must-staple certificate, lenient, expired fails", certs: stapledCertYAML(mustStaple, mustExpired), wantErr: true, want: counts{requests: 1, failed: 1}},
		// A certificate whose staple the policy refuses is skipped when
		// another one fits ("The selected ctx must adhere to OCSP policy").
		{name: "strict skips the certificate with an expired staple", certs: stapledCertYAML(leaf, expired) + stapledCertYAML(leaf2, valid2),
			policy: "STRICT_STAPLING", wantStaple: valid2, wantCert: "leaf2", want: counts{requests: 1, responses: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y := "common_tls_context:\n  tls_certificates:\n" + tc.certs
			if tc.policy != "" {
				y += "ocsp_staple_policy: " + tc.policy + "\n"
			}
			srv, err := BuildServer(parse(t, &tlsv3.DownstreamTlsContext{}, y), "ctx", nil)
			if err != nil {
				t.Fatal(err)
			}
			st := NewStats(stats.NewStore().Scope("l."))
			// No SNI: every certificate is a candidate (full scan).
			cs, err := handshake(t, srv, st, &tls.Config{InsecureSkipVerify: true})
			if tc.wantErr {
				if err == nil {
					t.Fatal("handshake succeeded, want an OCSP staple failure")
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(cs.OCSPResponse, tc.wantStaple) {
					t.Errorf("client got a staple of %d bytes, want %d", len(cs.OCSPResponse), len(tc.wantStaple))
				}
				if tc.wantCert != "" {
					if got := cs.PeerCertificates[0].Subject.CommonName; got != tc.wantCert {
						t.Errorf("certificate = %q, want %q", got, tc.wantCert)
					}
				}
			}
			got := counts{st.OCSPStapleRequests.Value(), st.OCSPStapleResponses.Value(), st.OCSPStapleOmitted.Value(), st.OCSPStapleFailed.Value()}
			if got != tc.want {
				t.Errorf("ocsp_staple_{requests,responses,omitted,failed} = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestStapleActionClientNotCapable: a client without status_request gets
// no staple and counts nothing, whatever the policy, even a must-staple
// one (Envoy: OcspStapleAction::ClientNotCapable).
func TestStapleActionClientNotCapable(t *testing.T) {
	for _, policy := range []tlsv3.DownstreamTlsContext_OcspStaplePolicy{
		tlsv3.DownstreamTlsContext_LENIENT_STAPLING, tlsv3.DownstreamTlsContext_STRICT_STAPLING, tlsv3.DownstreamTlsContext_MUST_STAPLE,
	} {
		t.Run(policy.String(), func(t *testing.T) {
			s := &certSelector{policy: policy}
			e := &certEntry{mustStaple: true, ocsp: &ocspResponse{}}
			if got := s.stapleAction(e, false, time.Now()); got != stapleClientNotCapable {
				t.Errorf("stapleAction = %d, want stapleClientNotCapable", got)
			}
		})
	}
}
