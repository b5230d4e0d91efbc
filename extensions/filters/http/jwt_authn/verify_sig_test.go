package jwtauthn

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/herald-proxy/herald/internal/stats"
)

// TestVerifyWith covers the checks verifyWith keeps from go-jose's
// verifiers: the ECDSA curve must be the alg's and the signature exactly
// R || S; an HMAC key must be at least the hash size; PSS salt length is
// auto-detected.
func TestVerifyWith(t *testing.T) {
	msg := []byte("header.payload")
	digest := sha256.Sum256(msg)

	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	r, s, err := ecdsa.Sign(rand.Reader, p256, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	es256 := make([]byte, 64)
	r.FillBytes(es256[:32])
	s.FillBytes(es256[32:])

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ps256, err := rsa.SignPSS(rand.Reader, rsaKey, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: 20})
	if err != nil {
		t.Fatal(err)
	}

	hsKey := []byte("0123456789abcdef0123456789abcdef") // 32 bytes
	mac := hmac.New(sha256.New, hsKey)
	mac.Write(msg)
	hs256 := mac.Sum(nil)
	shortKey := hsKey[:16]
	mac = hmac.New(sha256.New, shortKey)
	mac.Write(msg)
	hs256Short := mac.Sum(nil)

	tests := []struct {
		name string
		key  any
		alg  jose.SignatureAlgorithm
		sig  []byte
		want bool
	}{
		{name: "ES256", key: &p256.PublicKey, alg: jose.ES256, sig: es256, want: true},
		{name: "ES256 padded signature", key: &p256.PublicKey, alg: jose.ES256, sig: append([]byte{0}, es256...), want: false},
		{name: "ES384 alg with P-256 key", key: &p256.PublicKey, alg: jose.ES384, sig: es256, want: false},
		{name: "ES256 alg with P-384 key", key: &p384.PublicKey, alg: jose.ES256, sig: es256, want: false},
		{name: "PS256 any salt length", key: &rsaKey.PublicKey, alg: jose.PS256, sig: ps256, want: true},
		{name: "PS256 signature as RS256", key: &rsaKey.PublicKey, alg: jose.RS256, sig: ps256, want: false},
		{name: "HS256", key: hsKey, alg: jose.HS256, sig: hs256, want: true},
		{name: "HS256 key shorter than the hash", key: shortKey, alg: jose.HS256, sig: hs256Short, want: false},
		{name: "HS384 alg, HS256 mac", key: append(hsKey, hsKey...), alg: jose.HS384, sig: hs256, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := verifyWith(tc.key, tc.alg, msg, tc.sig); got != tc.want {
				t.Errorf("verifyWith = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCritHeaderRefused: a token naming a critical JWS extension fails
// verification (RFC 7515 section 4.1.11; herald implements none).
func TestCritHeaderRefused(t *testing.T) {
	s := newSigner(t, jose.HS256, "k")
	c := build(t, fmt.Sprintf(`providers: {p: {issuer: iss, local_jwks: {inline_string: %s}}}
rules: [{match: {prefix: /}, requires: {provider_name: p}}]`, quoteYAML(jwks(t, s))), stats.NewStore())
	tokenWith := func(header map[string]any) string {
		hb, err := json.Marshal(header)
		if err != nil {
			t.Fatal(err)
		}
		pb, err := json.Marshal(claims("iss", nil))
		if err != nil {
			t.Fatal(err)
		}
		in := base64.RawURLEncoding.EncodeToString(hb) + "." + base64.RawURLEncoding.EncodeToString(pb)
		mac := hmac.New(sha256.New, s.priv.([]byte))
		mac.Write([]byte(in))
		return in + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
	}
	tests := []struct {
		name     string
		header   map[string]any
		wantCode int
	}{
		{name: "no crit", header: map[string]any{"alg": "HS256", "kid": "k"}, wantCode: 0},
		{name: "crit", header: map[string]any{"alg": "HS256", "kid": "k", "crit": []string{"exp"}}, wantCode: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, _ := run(t, c, req("/", "authorization", "Bearer "+tokenWith(tc.header)), nil)
			if o.code != tc.wantCode {
				t.Errorf("got %+v, want code %d", o, tc.wantCode)
			}
		})
	}
}
