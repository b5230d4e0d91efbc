package tlsx

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/matcher"
)

// Why a peer certificate was refused, one per Envoy ssl.fail_verify_* stat
// (DefaultCertValidator, source/common/tls/cert_validator/default_validator.cc).
var (
	// ErrNoCertificate: a certificate was required and none was sent
	// (fail_verify_no_cert).
	ErrNoCertificate = errors.New("tls: peer did not send a certificate")
	// ErrVerifyChain: the chain does not verify against trusted_ca
	// (fail_verify_error).
	ErrVerifyChain = errors.New("tls: certificate does not verify against trusted_ca")
	// ErrVerifySAN: no subject alternative name matched (fail_verify_san).
	ErrVerifySAN = errors.New("tls: certificate subject alternative names do not match")
	// ErrVerifyHash: neither verify_certificate_hash nor
	// verify_certificate_spki matched (fail_verify_cert_hash).
	ErrVerifyHash = errors.New("tls: certificate hash does not match")
)

// verifyError carries a verification failure with its cause; Is reports
// the kind, so errors.Is(err, ErrVerifyChain) works through crypto/tls.
type verifyError struct {
	kind  error
	cause error
}

func (e *verifyError) Error() string {
	if e.cause == nil {
		return e.kind.Error()
	}
	return e.kind.Error() + ": " + e.cause.Error()
}
func (e *verifyError) Is(target error) bool { return target == e.kind }

// validator is a built CertificateValidationContext. Immutable.
type validator struct {
	roots        *x509.CertPool // nil: the chain is not verified
	allowExpired bool
	sans         []sanMatcher
	hashes       [][]byte // SHA-256 of the DER certificate
	spkis        [][]byte // SHA-256 of the DER SubjectPublicKeyInfo
	// required is true when a peer certificate must be sent: Envoy requires
	// it with require_client_certificate, or when verify_certificate_spki,
	// verify_certificate_hash or match_typed_subject_alt_names is set
	// (common.proto, trusted_ca).
	required bool
	// crls are the crl revocation lists; with onlyLeafCRL only the leaf
	// is checked against them (only_verify_leaf_cert_crl).
	crls        []*x509.RevocationList
	onlyLeafCRL bool
	// acceptUntrusted is trust_chain_verification ACCEPT_UNTRUSTED: every
	// check still runs and counts its fail_verify_* stat, but none fails
	// the handshake, and SAN, hash and SPKI checks no longer require a
	// certificate (Envoy's DefaultCertValidator: verify mode SSL_VERIFY_PEER
	// without SSL_VERIFY_FAIL_IF_NO_PEER_CERT, and "return
	// (allow_untrusted_certificate_ || success)").
	acceptUntrusted bool
}

type sanMatcher struct {
	kind tlsv3.SubjectAltNameMatcher_SanType
	m    matcher.String
	// exact is the exact value for DNS matching, where a wildcard SAN in
	// the certificate ("*.example.com") matches (Envoy's dnsNameMatch).
	exact string
}

// validationFields are the CertificateValidationContext fields herald
// implements; others are refused by name.
var validationFields = []string{
	"trusted_ca", "verify_certificate_spki", "verify_certificate_hash",
	"match_typed_subject_alt_names", "match_subject_alt_names", "allow_expired_certificate",
	"trust_chain_verification", "crl", "only_verify_leaf_cert_crl",
}

// validationIssues names the issue of validation fields herald refuses.
var validationIssues = map[string]string{"watched_directory": "#5"}

func buildValidator(vc *tlsv3.CertificateValidationContext, path string) (*validator, configerr.List) {
	errs := configerr.RejectUnlisted(vc, path, validationIssues, validationFields...)
	v := &validator{
		allowExpired:    vc.GetAllowExpiredCertificate(),
		acceptUntrusted: vc.GetTrustChainVerification() == tlsv3.CertificateValidationContext_ACCEPT_UNTRUSTED,
	}
	if ca := vc.GetTrustedCa(); ca != nil {
		pem, ferr := LoadDataSource(ca, path+".trusted_ca")
		if ferr != nil {
			errs = append(errs, ferr)
		} else {
			v.roots = x509.NewCertPool()
			if !v.roots.AppendCertsFromPEM(pem) {
				errs = append(errs, configerr.At(path+".trusted_ca", "no PEM certificate found"))
			}
		}
	}
	if crl := vc.GetCrl(); crl != nil {
		v.crls = buildCRLs(crl, path+".crl", &errs)
		v.onlyLeafCRL = vc.GetOnlyVerifyLeafCertCrl()
		if vc.GetTrustedCa() == nil {
			// Envoy (CertificateValidationContextConfigImpl): "Failed to
			// load CRL from <source> without trusted CA".
			errs = append(errs, configerr.At(path+".crl", "a CRL needs trusted_ca"))
		}
	}
	for i, h := range vc.GetVerifyCertificateHash() {
		b, err := hex.DecodeString(strings.ReplaceAll(h, ":", ""))
		if err != nil || len(b) != sha256.Size {
			errs = append(errs, configerr.At(fmt.Sprintf("%s.verify_certificate_hash[%d]", path, i), "invalid hex-encoded SHA-256 %q", h))
			continue
		}
		v.hashes = append(v.hashes, b)
	}
	for i, s := range vc.GetVerifyCertificateSpki() {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != sha256.Size {
			errs = append(errs, configerr.At(fmt.Sprintf("%s.verify_certificate_spki[%d]", path, i), "invalid base64-encoded SHA-256 %q", s))
			continue
		}
		v.spkis = append(v.spkis, b)
	}
	typed := vc.GetMatchTypedSubjectAltNames()
	for i, m := range typed {
		p := fmt.Sprintf("%s.match_typed_subject_alt_names[%d]", path, i)
		sm, ok := matcher.NewString(m.GetMatcher(), p+".matcher", &errs)
		if !ok {
			continue
		}
		v.sans = append(v.sans, sanMatcher{kind: m.GetSanType(), m: sm, exact: exactOf(m.GetMatcher())})
	}
	// Envoy: "if both this field and match_typed_subject_alt_names are
	// specified, the former (deprecated field) is ignored"; alone, each
	// matcher applies to every SAN type.
	if len(typed) == 0 {
		for i, m := range vc.GetMatchSubjectAltNames() {
			p := fmt.Sprintf("%s.match_subject_alt_names[%d]", path, i)
			sm, ok := matcher.NewString(m, p, &errs)
			if !ok {
				continue
			}
			v.sans = append(v.sans, sanMatcher{kind: tlsv3.SubjectAltNameMatcher_SAN_TYPE_UNSPECIFIED, m: sm, exact: exactOf(m)})
		}
	}
	v.required = !v.acceptUntrusted && (len(v.hashes) > 0 || len(v.spkis) > 0 || len(v.sans) > 0)
	return v, errs
}

func exactOf(m *matcherv3.StringMatcher) string {
	if e, ok := m.GetMatchPattern().(*matcherv3.StringMatcher_Exact); ok && !m.GetIgnoreCase() {
		return e.Exact
	}
	return ""
}

// verifyPresence is the VerifyConnection of an ACCEPT_UNTRUSTED
// validator: only a required certificate (require_client_certificate) is
// enforced; the other checks run after the handshake (softFailure).
func (v *validator) verifyPresence(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 && v.required {
		return &verifyError{kind: ErrNoCertificate}
	}
	return nil
}

// softFailure runs an ACCEPT_UNTRUSTED validator's checks on an accepted
// connection and returns the first that failed (nil: none), for its
// fail_verify_* stat. As Envoy's doVerifyCertChain, an untrusted chain
// stops there: SANs and pins are not looked at. name is the SAN an
// auto_san_validation connection asks for ("" for none); Envoy checks it
// before the SAN matchers.
func (v *validator) softFailure(cs *tls.ConnectionState, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	if err := v.verifyChain(cs.PeerCertificates); err != nil {
		return err
	}
	if name != "" {
		if err := verifyName(*cs, name); err != nil {
			return err
		}
	}
	return v.verifyLeaf(cs.PeerCertificates[0])
}

// verify checks the peer's certificates in Envoy's order: presence, chain,
// SANs, then hash/SPKI pins.
func (v *validator) verify(cs tls.ConnectionState) error {
	certs := cs.PeerCertificates
	if len(certs) == 0 {
		if v.required {
			return &verifyError{kind: ErrNoCertificate}
		}
		return nil
	}
	if err := v.verifyChain(certs); err != nil {
		return err
	}
	return v.verifyLeaf(certs[0])
}

// verifyChain verifies certs against trusted_ca and the CRLs (nil without
// trusted_ca).
func (v *validator) verifyChain(certs []*x509.Certificate) error {
	leaf := certs[0]
	if v.roots != nil {
		opts := x509.VerifyOptions{Roots: v.roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
		if v.allowExpired && time.Now().After(leaf.NotAfter) {
			opts.CurrentTime = leaf.NotAfter.Add(-time.Second)
		}
		chains, err := leaf.Verify(opts)
		if err != nil {
			return &verifyError{kind: ErrVerifyChain, cause: err}
		}
		if len(v.crls) > 0 {
			if err := v.checkCRLs(chains); err != nil {
				return &verifyError{kind: ErrVerifyChain, cause: err}
			}
		}
	}
	return nil
}

// verifyLeaf checks the leaf's SANs, then the hash/SPKI pins.
func (v *validator) verifyLeaf(leaf *x509.Certificate) error {
	if len(v.sans) > 0 && !v.matchSAN(leaf) {
		return &verifyError{kind: ErrVerifySAN}
	}
	if len(v.hashes) > 0 || len(v.spkis) > 0 {
		// Envoy: "a hash matching value from either of the lists will
		// result in the certificate being accepted".
		if !matchDigest(v.hashes, leaf.Raw) && !matchDigest(v.spkis, leaf.RawSubjectPublicKeyInfo) {
			return &verifyError{kind: ErrVerifyHash}
		}
	}
	return nil
}

func matchDigest(want [][]byte, der []byte) bool {
	if len(want) == 0 {
		return false
	}
	sum := sha256.Sum256(der)
	for _, w := range want {
		if bytes.Equal(w, sum[:]) {
			return true
		}
	}
	return false
}

func (v *validator) matchSAN(c *x509.Certificate) bool {
	for i := range v.sans {
		m := &v.sans[i]
		any := m.kind == tlsv3.SubjectAltNameMatcher_SAN_TYPE_UNSPECIFIED
		if any || m.kind == tlsv3.SubjectAltNameMatcher_DNS {
			for _, d := range c.DNSNames {
				if m.exact != "" && dnsNameMatch(m.exact, d) || m.m.Match(d) {
					return true
				}
			}
		}
		if any || m.kind == tlsv3.SubjectAltNameMatcher_EMAIL {
			for _, e := range c.EmailAddresses {
				if m.m.Match(e) {
					return true
				}
			}
		}
		if any || m.kind == tlsv3.SubjectAltNameMatcher_URI {
			for _, u := range c.URIs {
				if m.m.Match(u.String()) {
					return true
				}
			}
		}
		if any || m.kind == tlsv3.SubjectAltNameMatcher_IP_ADDRESS {
			for _, ip := range c.IPAddresses {
				if m.m.Match(ipString(ip)) {
					return true
				}
			}
		}
	}
	return false
}

func ipString(ip net.IP) string {
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.String()
}

// dnsNameMatch is Envoy's Utility::dnsNameMatch: a certificate SAN
// "*.example.com" matches exactly one extra label ("api.example.com", not
// "a.b.example.com"); otherwise the names compare case-insensitively.
func dnsNameMatch(name, san string) bool {
	if strings.EqualFold(name, san) {
		return true
	}
	if !strings.HasPrefix(san, "*.") {
		return false
	}
	i := strings.IndexByte(name, '.')
	return i > 0 && strings.EqualFold(name[i:], san[1:])
}
