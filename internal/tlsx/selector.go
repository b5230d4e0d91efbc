package tlsx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"slices"
	"strings"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
)

// ErrOCSPStapleFailed fails a handshake whose certificate must be stapled
// (STRICT_STAPLING with an expired response, MUST_STAPLE or a must-staple
// certificate without a valid one): Envoy's OcspStapleAction::Fail, counted
// as ssl.ocsp_staple_failed.
var ErrOCSPStapleFailed = errors.New("tls: OCSP staple policy refused the certificate")

// stapleAction is Envoy's Ssl::OcspStapleAction.
type stapleAction uint8

const (
	// stapleClientNotCapable: the client did not send status_request;
	// nothing is stapled and no staple stat is counted.
	stapleClientNotCapable stapleAction = iota
	// staple: the response is sent (ocsp_staple_responses).
	staple
	// stapleNone: no response is sent (ocsp_staple_omitted).
	stapleNone
	// stapleFail: the handshake fails (ocsp_staple_failed).
	stapleFail
)

// stapleExtension is the TLS status_request extension (RFC 6066), whose
// presence makes a client OCSP-capable (isClientOcspCapable).
const stapleExtension = 5

// supportedVersionsExtension is TLS 1.3's supported_versions.
const supportedVersionsExtension = 43

// Key types of the server-names map: at most one certificate per key type
// and name (Envoy's PkeyTypesMap keyed by EVP_PKEY id).
const (
	keyOther = iota
	keyRSA
	keyECDSA
	keyEd25519
)

// curveSet is a set of the ECDSA curves a client can verify, Envoy's
// CurveNIDVector.
type curveSet uint8

const (
	curveP256 curveSet = 1 << iota
	curveP384
	curveP521
)

// certEntry is one configured certificate as selection sees it. Immutable.
type certEntry struct {
	// stapled is the certificate with its OCSP response as OCSPStaple;
	// plain is the same without it. Both are plain when there is none.
	stapled, plain *tls.Certificate
	// curve is the ECDSA key's curve, 0 for other keys (Envoy's
	// EC_CURVE_INVALID_NID).
	curve      curveSet
	keyType    int
	ocsp       *ocspResponse
	mustStaple bool
}

// certSelector is Envoy's DefaultTlsCertificateSelector: it picks the
// certificate of a handshake by SNI, then by the client's ECDSA support,
// and applies the OCSP staple policy. Immutable after newCertSelector.
// Envoy: source/common/tls/default_tls_certificate_selector.cc.
type certSelector struct {
	certs []certEntry
	// names maps exact names ("www.example.com") and wildcard suffixes
	// (".example.com" for "*.example.com") to entries, the first
	// certificate of each key type only, in configuration order.
	names    map[string][]int
	hasRSA   bool
	fullScan bool
	policy   tlsv3.DownstreamTlsContext_OcspStaplePolicy
	// max13 is true when the context allows TLS 1.3; ecdsaCiphers are
	// the configured cipher suites authenticated by ECDSA (TLS 1.2 and
	// below).
	max13        bool
	ecdsaCiphers []uint16
	now          func() time.Time
}

// newCertSelector indexes certs. ocsp[i] is certs[i]'s parsed response
// (nil: none).
func newCertSelector(certs []tls.Certificate, ocsp []*ocspResponse, p params, fullScan bool, policy tlsv3.DownstreamTlsContext_OcspStaplePolicy) *certSelector {
	s := &certSelector{
		certs:    make([]certEntry, len(certs)),
		names:    map[string][]int{},
		fullScan: fullScan,
		policy:   policy,
		max13:    p.max >= tls.VersionTLS13,
		now:      time.Now,
	}
	for _, id := range p.ciphers {
		if _, ok := ecdsaCipherMinVersion[id]; ok {
			s.ecdsaCiphers = append(s.ecdsaCiphers, id)
		}
	}
	for i := range certs {
		e := &s.certs[i]
		plain := certs[i]
		plain.OCSPStaple = nil
		e.plain = &plain
		e.stapled = e.plain
		if ocsp[i] != nil {
			st := certs[i]
			st.OCSPStaple = ocsp[i].der
			e.stapled, e.ocsp = &st, ocsp[i]
		}
		leaf := certs[i].Leaf
		if leaf == nil {
			continue
		}
		e.mustStaple = isMustStaple(leaf)
		switch k := leaf.PublicKey.(type) {
		case *rsa.PublicKey:
			e.keyType = keyRSA
			s.hasRSA = true
		case *ecdsa.PublicKey:
			e.keyType = keyECDSA
			e.curve = curveOf(k.Curve)
		default:
			if leaf.PublicKeyAlgorithm == x509.Ed25519 {
				e.keyType = keyEd25519
			}
		}
		for _, n := range serverNames(leaf) {
			s.add(n, i)
		}
	}
	return s
}

// curveOf is the selection curve of an ECDSA key; 0 for curves a client
// cannot name (P-224), which then select like an RSA key. Envoy refuses
// such certificates at load ("only P-256, P-384 or P-521 ECDSA
// certificates are supported", context_impl.cc); herald does not yet, and
// crypto/tls cannot sign with them, so the handshake fails instead.
func curveOf(c elliptic.Curve) curveSet {
	switch c {
	case elliptic.P256():
		return curveP256
	case elliptic.P384():
		return curveP384
	case elliptic.P521():
		return curveP521
	}
	return 0
}

// oidSubjectAltName is the subjectAltName extension; oidCommonName the
// commonName attribute.
var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidCommonName     = asn1.ObjectIdentifier{2, 5, 4, 3}
)

// serverNames are the names a certificate is selected by: its DNS SANs when
// it has a subjectAltName extension (of whatever types), else its subject's
// first common name (Envoy's populateServerNamesMap, RFC 6125 section
// 6.4.4, X509_NAME_get_index_by_NID(..., -1); Go's Subject.CommonName is
// the last one).
func serverNames(c *x509.Certificate) []string {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidSubjectAltName) {
			return c.DNSNames
		}
	}
	for _, a := range c.Subject.Names {
		if a.Type.Equal(oidCommonName) {
			if cn, ok := a.Value.(string); ok && cn != "" {
				return []string{cn}
			}
			return nil
		}
	}
	return nil
}

// add indexes name for entry i; an earlier certificate of the same key
// type keeps the name ("When there are duplicate names, prefer the earlier
// one").
func (s *certSelector) add(name string, i int) {
	if strings.HasPrefix(name, "*.") {
		name = name[1:]
	}
	for _, j := range s.names[name] {
		if s.certs[j].keyType == s.certs[i].keyType {
			return
		}
	}
	s.names[name] = append(s.names[name], i)
}

// stapleAction is Envoy's ocspStapleAction for entry e: a must-staple
// certificate upgrades the policy to MUST_STAPLE; a response is valid when
// it has not expired.
func (s *certSelector) stapleAction(e *certEntry, ocspCapable bool, now time.Time) stapleAction {
	if !ocspCapable {
		return stapleClientNotCapable
	}
	policy := s.policy
	if e.mustStaple {
		policy = tlsv3.DownstreamTlsContext_MUST_STAPLE
	}
	valid := e.ocsp != nil && !e.ocsp.expired(now)
	switch policy {
	case tlsv3.DownstreamTlsContext_STRICT_STAPLING:
		switch {
		case valid:
			return staple
		case e.ocsp != nil:
			// An expired response.
			return stapleFail
		}
		return stapleNone
	case tlsv3.DownstreamTlsContext_MUST_STAPLE:
		if !valid {
			return stapleFail
		}
		return staple
	default: // LENIENT_STAPLING
		if !valid {
			return stapleNone
		}
		return staple
	}
}

// find is Envoy's findTlsContext: the entry for a client that sent sni
// and can verify ECDSA signatures on curves ecdsa (empty: none), and the
// staple action. With SNI, a certificate for the exact name, then for the
// wildcard of its parent domain; the key type the client prefers (ECDSA
// when it can, the first RSA one standing by). Without SNI, or when no
// certificate matches it and full_scan_certs_on_sni_mismatch is set, the
// same choice over all certificates. Otherwise the first certificate.
func (s *certSelector) find(sni string, ecdsa curveSet, ocspCapable bool) (*certEntry, stapleAction) {
	// The clock matters only to the staple policy of an OCSP-capable
	// client (stapleAction returns before looking at it otherwise).
	var now time.Time
	if ocspCapable {
		now = s.now()
	}
	var (
		selected, candidate *certEntry
		action              stapleAction
	)
	ecdsaCapable := ecdsa != 0
	try := func(e *certEntry) bool {
		a := s.stapleAction(e, ocspCapable, now)
		if a == stapleFail {
			// "The selected ctx must adhere to OCSP policy".
			return false
		}
		if e.curve&ecdsa != 0 {
			selected, action = e, a
			return true
		}
		if !ecdsaCapable && e.curve == 0 {
			selected, action = e, a
			return true
		}
		if ecdsaCapable && e.curve == 0 && candidate == nil {
			// ECDSA is preferred: an RSA certificate stands by while the
			// search goes on.
			candidate, action = e, a
		}
		return false
	}
	fromMap := func(name string) {
		for _, i := range s.names[name] {
			if try(&s.certs[i]) {
				return
			}
		}
	}
	tail := func(nextPhase bool) {
		if selected == nil {
			selected = candidate
		}
		if selected == nil && !nextPhase {
			selected = &s.certs[0]
			action = s.stapleAction(selected, ocspCapable, now)
		}
	}
	if sni != "" {
		fromMap(sni)
		tail(true)
		if selected == nil {
			// Wildcard: ".example.com" for "www.example.com"
			// (https://datatracker.ietf.org/doc/html/rfc6125#section-6.4).
			if pos := strings.IndexByte(sni[1:], '.'); pos >= 0 && pos+1 < len(sni)-1 {
				fromMap(sni[pos+1:])
			}
		}
		tail(s.fullScan)
	}
	if selected == nil {
		candidate = nil
		if ecdsaCapable || s.hasRSA {
			for i := range s.certs {
				if try(&s.certs[i]) {
					break
				}
			}
		}
		tail(false)
	}
	return selected, action
}

// ecdsaCipherMinVersion are the ECDSA-authenticated suites herald
// implements with the lowest version they run on (BoringSSL's
// SSL_CIPHER_get_min_version): the CBC-SHA suites date from TLS 1.0, the
// others need TLS 1.2.
var ecdsaCipherMinVersion = map[uint16]uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA:          tls.VersionTLS10,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA:          tls.VersionTLS10,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256:       tls.VersionTLS12,
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256:       tls.VersionTLS12,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384:       tls.VersionTLS12,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: tls.VersionTLS12,
}

// Signature schemes and groups that name an ECDSA curve.
func curveOfCode(v uint16) curveSet {
	switch v {
	case uint16(tls.ECDSAWithP256AndSHA256), uint16(tls.CurveP256):
		return curveP256
	case uint16(tls.ECDSAWithP384AndSHA384), uint16(tls.CurveP384):
		return curveP384
	case uint16(tls.ECDSAWithP521AndSHA512), uint16(tls.CurveP521):
		return curveP521
	}
	return 0
}

// clientECDSACurves is Envoy's getClientEcdsaCapabilities: for a TLS 1.3
// client (supported_versions sent, the context allowing TLS 1.3) the
// curves of its ECDSA signature algorithms; for an older one the ECDSA
// curves of its supported groups, provided it offers an ECDSA cipher suite
// the context enables for its version. Empty: the client cannot take an
// ECDSA certificate.
func (s *certSelector) clientECDSACurves(hi *tls.ClientHelloInfo) curveSet {
	var out curveSet
	if s.max13 && slices.Contains(hi.Extensions, supportedVersionsExtension) {
		for _, ss := range hi.SignatureSchemes {
			out |= curveOfCode(uint16(ss))
		}
		return out
	}
	for _, c := range hi.SupportedCurves {
		out |= curveOfCode(uint16(c))
	}
	if out == 0 {
		return 0
	}
	// The client's version: with supported_versions, the legacy version
	// is TLS 1.2; without, Go derives SupportedVersions from it.
	version := uint16(tls.VersionTLS12)
	if !slices.Contains(hi.Extensions, supportedVersionsExtension) && len(hi.SupportedVersions) > 0 {
		version = hi.SupportedVersions[0]
	}
	for _, id := range hi.CipherSuites {
		if min, ok := ecdsaCipherMinVersion[id]; ok && min <= version && slices.Contains(s.ecdsaCiphers, id) {
			return out
		}
	}
	return 0
}

// handshakeStatsKey carries the listener's *Stats to GetCertificate
// through the handshake context.
type handshakeStatsKey struct{}

// getCertificate implements tls.Config.GetCertificate: Envoy's
// selectTlsContext, counting ssl.ocsp_staple_* into the stats the
// handshake context carries (Stats.handshakeContext). A client that did
// not send status_request counts nothing, so its handshake does not look
// the stats up.
func (s *certSelector) getCertificate(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
	ocspCapable := slices.Contains(hi.Extensions, stapleExtension)
	e, action := s.find(hi.ServerName, s.clientECDSACurves(hi), ocspCapable)
	if action == stapleClientNotCapable {
		return e.plain, nil
	}
	st, _ := hi.Context().Value(handshakeStatsKey{}).(*Stats)
	if st != nil {
		st.OCSPStapleRequests.Inc()
	}
	switch action {
	case staple:
		if st != nil {
			st.OCSPStapleResponses.Inc()
		}
		return e.stapled, nil
	case stapleFail:
		if st != nil {
			st.OCSPStapleFailed.Inc()
		}
		return nil, ErrOCSPStapleFailed
	default: // stapleNone
		if st != nil {
			st.OCSPStapleOmitted.Inc()
		}
		return e.plain, nil
	}
}

// withStats returns a handshake context carrying st. Stats built by
// NewStats keep one (Stats.handshakeContext), so handshakes do not
// allocate it.
func withStats(st *Stats) context.Context {
	return context.WithValue(context.Background(), handshakeStatsKey{}, st)
}
