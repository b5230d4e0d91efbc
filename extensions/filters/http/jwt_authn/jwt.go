package jwtauthn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	_ "crypto/sha256" // crypto.SHA256 for verifyWith
	_ "crypto/sha512" // crypto.SHA384, crypto.SHA512 for verifyWith
	"encoding/base64"
	"encoding/json"
	"math"
	"math/big"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// supportedAlgs are the JWT algorithms Envoy verifies
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/jwt_authn_filter).
var supportedAlgs = map[string]jose.SignatureAlgorithm{
	"ES256": jose.ES256, "ES384": jose.ES384, "ES512": jose.ES512,
	"HS256": jose.HS256, "HS384": jose.HS384, "HS512": jose.HS512,
	"RS256": jose.RS256, "RS384": jose.RS384, "RS512": jose.RS512,
	"PS256": jose.PS256, "PS384": jose.PS384, "PS512": jose.PS512,
	"EdDSA": jose.EdDSA,
}

// jwt is a parsed, not yet verified token: jwt_verify_lib's Jwt.
type jwt struct {
	raw string
	alg jose.SignatureAlgorithm
	kid string
	// header and payload are the decoded JSON objects.
	header, payload map[string]any
	// payloadB64 is the payload as it appears in the token (base64url,
	// no padding), forwarded by forward_payload_header.
	payloadB64 string
	// signingInput is "header.payload" as it appears in the token; sig is
	// the decoded signature (both decoded once here, not again to verify).
	signingInput string
	sig          []byte

	iss, sub  string
	audiences []string
	// nbf and exp are Unix seconds; 0 when absent.
	nbf, exp uint64
}

var b64 = base64.RawURLEncoding

// decodeSegment decodes one base64url segment, tolerating padding as
// Envoy's Base64Url::decode does.
func decodeSegment(s string) ([]byte, bool) {
	b, err := b64.DecodeString(strings.TrimRight(s, "="))
	return b, err == nil
}

// parseJWT is jwt_verify_lib's Jwt::parseFromString.
func parseJWT(token string) (*jwt, status) {
	h, rest, ok1 := strings.Cut(token, ".")
	p, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return nil, statusJwtBadFormat
	}
	t := &jwt{raw: token, payloadB64: p, signingInput: token[:len(h)+1+len(p)]}

	hb, ok := decodeSegment(h)
	if !ok || json.Unmarshal(hb, &t.header) != nil || t.header == nil {
		return nil, statusJwtHeaderParseError
	}
	alg, ok := t.header["alg"].(string)
	if !ok {
		return nil, statusJwtHeaderBadAlg
	}
	if t.alg, ok = supportedAlgs[alg]; !ok {
		return nil, statusJwtHeaderNotImplementedAlg
	}
	if v, present := t.header["kid"]; present {
		if t.kid, ok = v.(string); !ok {
			return nil, statusJwtHeaderBadKid
		}
	}

	pb, ok := decodeSegment(p)
	if !ok || json.Unmarshal(pb, &t.payload) != nil || t.payload == nil {
		return nil, statusJwtPayloadParseError
	}
	if !t.claims() {
		return nil, statusJwtPayloadParseError
	}
	if t.sig, ok = decodeSegment(sig); !ok || sig == "" {
		return nil, statusJwtSignatureParseError
	}
	return t, statusOK
}

// claims reads the registered claims; a claim of the wrong type is a
// payload parse error, as in jwt_verify_lib (StructUtils WRONG_TYPE).
func (t *jwt) claims() bool {
	var ok bool
	if v, present := t.payload["iss"]; present {
		if t.iss, ok = v.(string); !ok {
			return false
		}
	}
	if v, present := t.payload["sub"]; present {
		if t.sub, ok = v.(string); !ok {
			return false
		}
	}
	switch a := t.payload["aud"].(type) {
	case nil:
	case string:
		t.audiences = []string{a}
	case []any:
		for _, e := range a {
			s, ok := e.(string)
			if !ok {
				return false
			}
			t.audiences = append(t.audiences, s)
		}
	default:
		return false
	}
	return t.seconds("nbf", &t.nbf) && t.seconds("exp", &t.exp)
}

// seconds reads a NumericDate claim into dst (left 0 when absent).
func (t *jwt) seconds(name string, dst *uint64) bool {
	v, present := t.payload[name]
	if !present {
		return true
	}
	n, ok := v.(float64)
	if !ok || n < 0 || n > math.MaxUint64 {
		return false
	}
	*dst = uint64(n)
	return true
}

// checkTime is jwt_verify_lib's Jwt::verifyTimeConstraint: nbf may be at
// most skew seconds in the future, exp at most skew seconds in the past.
func (t *jwt) checkTime(now, skew uint64) status {
	if t.nbf > now+skew {
		return statusJwtNotYetValid
	}
	if t.exp != 0 && t.exp+skew < now {
		return statusJwtExpired
	}
	return statusOK
}

// verifySignature is jwt_verify_lib's verifyJwtWithoutTimeChecking: every
// key whose kid (when both have one), alg (when the key has one) and type
// fit the token is tried; JwksKidAlgMismatch when none fits. The token
// parsed by parseJWT is verified as is: re-parsing it with go-jose's
// ParseSignedCompact would decode and JSON-parse it a second time per
// request.
func (t *jwt) verifySignature(ks *keySet) status {
	if _, crit := t.header["crit"]; crit {
		// herald understands no JWS extension, and RFC 7515 section 4.1.11
		// says such a token MUST be rejected (go-jose, used before, did).
		return statusJwtVerificationFail
	}
	signed := []byte(t.signingInput)
	tried := false
	for i := range ks.keys {
		k := &ks.keys[i]
		if t.kid != "" && k.kid != "" && k.kid != t.kid {
			continue
		}
		if k.alg != "" && k.alg != string(t.alg) {
			continue
		}
		if !k.fits(t.alg) {
			continue
		}
		tried = true
		if verifyWith(k.key, t.alg, signed, t.sig) {
			return statusOK
		}
	}
	if !tried {
		return statusJwksKidAlgMismatch
	}
	return statusJwtVerificationFail
}

// verifyWith checks sig over signed with key for alg (RFC 7518 section 3),
// as go-jose's verifiers do.
func verifyWith(key any, alg jose.SignatureAlgorithm, signed, sig []byte) bool {
	var h crypto.Hash
	switch alg {
	case jose.RS256, jose.PS256, jose.ES256, jose.HS256:
		h = crypto.SHA256
	case jose.RS384, jose.PS384, jose.ES384, jose.HS384:
		h = crypto.SHA384
	case jose.RS512, jose.PS512, jose.ES512, jose.HS512:
		h = crypto.SHA512
	}
	switch k := key.(type) {
	case ed25519.PublicKey:
		return alg == jose.EdDSA && len(k) == ed25519.PublicKeySize && ed25519.Verify(k, signed, sig)
	case []byte:
		// RFC 7518 section 3.2: "A key of the same size as the hash output
		// ... or larger MUST be used" (go-jose enforces it; jwt_verify_lib
		// does not, so herald is stricter here).
		if h == 0 || len(k) < h.Size() {
			return false
		}
		mac := hmac.New(h.New, k)
		mac.Write(signed)
		return hmac.Equal(mac.Sum(nil), sig)
	}
	if h == 0 {
		return false
	}
	d := h.New()
	d.Write(signed)
	digest := d.Sum(nil)
	switch k := key.(type) {
	case *rsa.PublicKey:
		if strings.HasPrefix(string(alg), "PS") {
			// nil options: salt length auto-detected, as go-jose verifies.
			return rsa.VerifyPSS(k, h, digest, sig, nil) == nil
		}
		return rsa.VerifyPKCS1v15(k, h, digest, sig) == nil
	case *ecdsa.PublicKey:
		// JWS ECDSA signatures are R || S, each the curve's byte size
		// (RFC 7518 section 3.4); the key's curve must be the alg's.
		var curve elliptic.Curve
		switch alg {
		case jose.ES256:
			curve = elliptic.P256()
		case jose.ES384:
			curve = elliptic.P384()
		case jose.ES512:
			curve = elliptic.P521()
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		if k.Curve != curve || len(sig) != 2*size {
			return false
		}
		r := new(big.Int).SetBytes(sig[:size])
		s := new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(k, digest, r, s)
	}
	return false
}

// claim returns the claim at path (nested objects), or nil.
func (t *jwt) claim(path []string) any {
	var cur any = t.payload
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[seg]
	}
	return cur
}
