package jwtauthn

import (
	"testing"
)

// FuzzParseJWT feeds untrusted tokens to the parser: it must not panic,
// and a token it accepts has a supported alg and a payload object.
func FuzzParseJWT(f *testing.F) {
	for _, seed := range []string{
		"", "a.b.c", "e30.e30.c2ln",
		"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhIiwiYXVkIjpbImIiXSwiZXhwIjoxfQ.c2ln",
		"eyJhbGciOiJFUzI1NiIsImtpZCI6MX0.e30.c2ln",
		"eyJhbGciOiJIUzI1NiJ9.eyJuYmYiOi0xfQ.c2ln",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		j, st := parseJWT(token)
		if st != statusOK {
			return
		}
		if _, ok := supportedAlgs[string(j.alg)]; !ok || j.payload == nil {
			t.Fatalf("accepted %q with alg %q, payload %v", token, j.alg, j.payload)
		}
		j.checkTime(0, 60)
	})
}

// FuzzParseJWKS feeds untrusted JWKS documents (a remote JWKS is
// untrusted input) to the parser: it must not panic.
func FuzzParseJWKS(f *testing.F) {
	for _, seed := range []string{
		"", "{}", `{"keys": 1}`, `{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}`,
		`{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}`,
		`{"keys": [{"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}]}`,
		`{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AA"}]}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		ks, st := parseJWKS([]byte(doc))
		if st == statusOK && len(ks.keys) == 0 {
			t.Fatalf("accepted %q without keys", doc)
		}
	})
}
