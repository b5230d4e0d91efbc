package tlsx

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ocspResponse is a parsed OCSP response (RFC 6960) to staple, as Envoy's
// OcspResponseWrapperImpl keeps it: the bytes, the one certificate's serial
// number and its validity. Immutable.
// Envoy: source/common/tls/ocsp/ocsp.cc.
type ocspResponse struct {
	der        []byte
	serial     *big.Int
	thisUpdate time.Time
	// nextUpdate is zero when the response has none; Envoy then treats the
	// response as expired.
	nextUpdate time.Time
}

// expired is Envoy's OcspResponseWrapperImpl::isExpired: no nextUpdate, or
// nextUpdate before now.
func (r *ocspResponse) expired(now time.Time) bool {
	return r.nextUpdate.IsZero() || r.nextUpdate.Before(now)
}

// matches is Envoy's matchesCertificate: the response's serial number is the
// certificate's (the issuer is not compared, as in Envoy).
func (r *ocspResponse) matches(c *x509.Certificate) bool {
	return c.SerialNumber != nil && r.serial.Cmp(c.SerialNumber) == 0
}

// oidOCSPBasic is id-pkix-ocsp-basic.
var oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}

// oidTLSFeature is the TLS feature extension (RFC 7633); mustStapleValue is
// its value when it lists status_request only: SEQUENCE { INTEGER 5 }.
var (
	oidTLSFeature   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 24}
	mustStapleValue = []byte{0x30, 0x03, 0x02, 0x01, 0x05}
)

// isMustStaple reports whether c carries the must-staple TLS feature, as
// Envoy tests it: the extension's value is exactly SEQUENCE { 5 }
// (context_impl.cc, "The must staple extension means the certificate
// promises to carry with it an OCSP staple").
func isMustStaple(c *x509.Certificate) bool {
	for _, e := range c.Extensions {
		if e.Id.Equal(oidTLSFeature) {
			return bytes.Equal(e.Value, mustStapleValue)
		}
	}
	return false
}

// Parse errors, Envoy's messages (ocsp.cc).
var (
	errOCSPUnsuccessful = errors.New("OCSP response was unsuccessful")
	errOCSPNoBody       = errors.New("OCSP response has no body")
	errOCSPNotOne       = errors.New("OCSP Response must be for one certificate only")
)

// parseOCSPResponse reads a DER OCSP response as Envoy's
// Asn1OcspUtility::parseOcspResponse and validateResponse do: the
// signature is not checked ("OCSP responses are expected to be delivered
// from a reliable source"), extensions are ignored, the status must be
// successful and the response must cover exactly one certificate.
//
// golang.org/x/crypto/ocsp.ParseResponse is not used because it refuses
// responses Envoy accepts: with an embedded responder certificate it
// always checks the response's signature against it (even with a nil
// issuer), it refuses critical singleExtensions, and it parses the
// responder name and embedded certificates, where Envoy skips all three.
func parseOCSPResponse(der []byte) (*ocspResponse, error) {
	in := cryptobyte.String(der)
	var resp cryptobyte.String
	if !in.ReadASN1(&resp, cbasn1.SEQUENCE) {
		return nil, errors.New("OCSP Response is not a well-formed ASN.1 SEQUENCE")
	}
	if !in.Empty() {
		return nil, errors.New("Data contained more than a single OCSP response")
	}
	var status cryptobyte.String
	if !resp.ReadASN1(&status, cbasn1.ENUM) || len(status) == 0 {
		return nil, errors.New("OCSP ResponseStatus is not a well-formed ASN.1 ENUMERATED")
	}
	switch status[0] {
	case 0, 1, 2, 3, 5, 6:
	default:
		return nil, fmt.Errorf("Unknown OCSP Response Status variant: %d", status[0])
	}
	var bytesField cryptobyte.String
	var hasBytes bool
	if !resp.ReadOptionalASN1(&bytesField, &hasBytes, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, errors.New("OCSP ResponseBytes is not well-formed")
	}
	if status[0] != 0 {
		return nil, errOCSPUnsuccessful
	}
	if !hasBytes {
		return nil, errOCSPNoBody
	}
	var rb, basic cryptobyte.String
	var oid asn1.ObjectIdentifier
	if !bytesField.ReadASN1(&rb, cbasn1.SEQUENCE) {
		return nil, errors.New("OCSP ResponseBytes is not a well-formed SEQUENCE")
	}
	if !rb.ReadASN1ObjectIdentifier(&oid) || !rb.ReadASN1(&basic, cbasn1.OCTET_STRING) {
		return nil, errors.New("Expected ASN.1 OCTETSTRING for response")
	}
	if !oid.Equal(oidOCSPBasic) {
		return nil, fmt.Errorf("Unknown OCSP Response type with OID: %s", oid)
	}
	var br, data cryptobyte.String
	if !basic.ReadASN1(&br, cbasn1.SEQUENCE) {
		return nil, errors.New("OCSP BasicOCSPResponse is not a wellf-formed ASN.1 SEQUENCE")
	}
	if !br.ReadASN1(&data, cbasn1.SEQUENCE) {
		return nil, errors.New("OCSP ResponseData is not a well-formed ASN.1 SEQUENCE")
	}
	var version cryptobyte.String
	var hasVersion bool
	if !data.ReadOptionalASN1(&version, &hasVersion, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, errors.New("OCSP ResponseData version is not well-formed")
	}
	if hasVersion {
		var v int64
		if !version.ReadASN1Integer(&v) || v != 0 {
			return nil, errors.New("OCSP ResponseData version is not supported")
		}
	}
	// ResponderID: byName [1] or byKey [2].
	switch byName, byKey := cbasn1.Tag(1).Constructed().ContextSpecific(), cbasn1.Tag(2).Constructed().ContextSpecific(); {
	case data.PeekASN1Tag(byName):
		data.SkipASN1(byName)
	case data.PeekASN1Tag(byKey):
		data.SkipASN1(byKey)
	default:
		return nil, errors.New("Unknown choice for Responder ID")
	}
	if !data.SkipASN1(cbasn1.GeneralizedTime) {
		return nil, errors.New("OCSP producedAt is not a GeneralizedTime")
	}
	var responses cryptobyte.String
	if !data.ReadASN1(&responses, cbasn1.SEQUENCE) {
		return nil, errors.New("OCSP responses is not a well-formed ASN.1 SEQUENCE")
	}
	var out *ocspResponse
	n := 0
	for !responses.Empty() {
		r, err := parseSingleResponse(&responses)
		if err != nil {
			return nil, err
		}
		out = r
		n++
	}
	if n != 1 {
		return nil, errOCSPNotOne
	}
	out.der = der
	return out, nil
}

// parseSingleResponse reads one SingleResponse: the CertID's serial number,
// the status (good, revoked or unknown: all accepted, as in Envoy),
// thisUpdate and the optional nextUpdate.
func parseSingleResponse(s *cryptobyte.String) (*ocspResponse, error) {
	var sr, certID cryptobyte.String
	if !s.ReadASN1(&sr, cbasn1.SEQUENCE) {
		return nil, errors.New("OCSP SingleResponse is not a well-formed ASN.1 SEQUENCE")
	}
	if !sr.ReadASN1(&certID, cbasn1.SEQUENCE) {
		return nil, errors.New("OCSP CertID is not a well-formed ASN.1 SEQUENCE")
	}
	serial := new(big.Int)
	if !certID.SkipASN1(cbasn1.SEQUENCE) || !certID.SkipASN1(cbasn1.OCTET_STRING) ||
		!certID.SkipASN1(cbasn1.OCTET_STRING) || !certID.ReadASN1Integer(serial) {
		return nil, errors.New("OCSP CertID is not well-formed")
	}
	switch {
	case sr.PeekASN1Tag(cbasn1.Tag(0).ContextSpecific()):
		sr.SkipASN1(cbasn1.Tag(0).ContextSpecific())
	case sr.PeekASN1Tag(cbasn1.Tag(1).Constructed().ContextSpecific()):
		sr.SkipASN1(cbasn1.Tag(1).Constructed().ContextSpecific())
	case sr.PeekASN1Tag(cbasn1.Tag(2).ContextSpecific()):
		sr.SkipASN1(cbasn1.Tag(2).ContextSpecific())
	default:
		return nil, errors.New("Unknown OcspCertStatus tag")
	}
	r := &ocspResponse{serial: serial}
	if !sr.ReadASN1GeneralizedTime(&r.thisUpdate) {
		return nil, errors.New("OCSP thisUpdate is not a GeneralizedTime")
	}
	var next cryptobyte.String
	var hasNext bool
	if !sr.ReadOptionalASN1(&next, &hasNext, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return nil, errors.New("OCSP nextUpdate is not well-formed")
	}
	if hasNext && !next.ReadASN1GeneralizedTime(&r.nextUpdate) {
		return nil, errors.New("OCSP nextUpdate is not a GeneralizedTime")
	}
	return r, nil
}
