package jwtauthn

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
	"time"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/stats"
)

// testNow is the injected clock of the unit tests.
var testNow = time.Unix(1_700_000_000, 0)

// signer is a key pair of one algorithm: it signs tokens and renders its
// public half as a JWKS.
type signer struct {
	alg  jose.SignatureAlgorithm
	kid  string
	priv any
	pub  any
}

// rsaKey is generated once: RSA generation is slow.
var rsaKey = func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}()

func newSigner(t testing.TB, alg jose.SignatureAlgorithm, kid string) *signer {
	t.Helper()
	s := &signer{alg: alg, kid: kid}
	switch {
	case strings.HasPrefix(string(alg), "RS"), strings.HasPrefix(string(alg), "PS"):
		s.priv, s.pub = rsaKey, &rsaKey.PublicKey
	case strings.HasPrefix(string(alg), "ES"):
		curve := map[jose.SignatureAlgorithm]elliptic.Curve{jose.ES256: elliptic.P256(), jose.ES384: elliptic.P384(), jose.ES512: elliptic.P521()}[alg]
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s.priv, s.pub = k, &k.PublicKey
	case alg == jose.EdDSA:
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		s.priv, s.pub = priv, pub
	case strings.HasPrefix(string(alg), "HS"):
		secret := make([]byte, 64)
		rand.Read(secret)
		s.priv, s.pub = secret, secret
	default:
		t.Fatalf("no key for %s", alg)
	}
	return s
}

// sign returns a compact JWS of claims.
func (s *signer) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if s.kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), s.kid)
	}
	js, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	obj, err := js.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// jwks renders the public keys of signers as a JWKS document.
func jwks(t testing.TB, signers ...*signer) string {
	t.Helper()
	var set jose.JSONWebKeySet
	for _, s := range signers {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: s.pub, KeyID: s.kid, Algorithm: string(s.alg)})
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// claims returns standard claims for iss and aud, valid at testNow.
func claims(iss string, aud any) map[string]any {
	c := map[string]any{"iss": iss, "sub": "user@example.com", "exp": testNow.Add(time.Hour).Unix(), "iat": testNow.Unix()}
	if aud != nil {
		c["aud"] = aud
	}
	return c
}

// quoteYAML makes s safe inside a single-quoted YAML scalar.
func quoteYAML(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// build builds the filter config from YAML with the test clock.
func build(t testing.TB, yaml string, store *stats.Store) *Config {
	t.Helper()
	cfg := httpfiltertest.Parse(t, yaml, &jwtauthnv3.JwtAuthentication{})
	f, err := Build(cfg, httpfiltertest.BuildContext(Name, store))
	if err != nil {
		t.Fatalf("Build: %v", err)
	}
	c := f(&httpfiltertest.Callbacks{}).(*Filter).cfg
	c.now = func() time.Time { return testNow }
	return c
}

// outcome is what a request got through the filter.
type outcome struct {
	status  httpfilter.Status
	code    int
	body    string
	details string
	authn   string // www-authenticate
}

// run sends h through a new filter of c on route.
func run(t testing.TB, c *Config, h *hhttp.Headers, route httpfilter.Route) (outcome, *httpfiltertest.Callbacks) {
	t.Helper()
	cb := &httpfiltertest.Callbacks{MatchedRoute: route}
	f := c.newFilter(cb).(*Filter)
	var o outcome
	o.status = f.DecodeHeaders(h, true)
	if len(cb.Replies) > 0 {
		r := cb.Replies[0]
		o.code, o.body, o.details = r.Code, r.Body, r.Details
		o.authn = r.Headers.Get("www-authenticate")
	}
	f.OnDestroy()
	return o, cb
}

// req returns a GET of path for example.com with x-forwarded-proto http and
// the given header pairs.
func req(path string, kv ...string) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "GET")
	h.Add(hhttp.Path, path)
	h.Add(hhttp.Authority, "example.com")
	h.Add(hhttp.Scheme, "http")
	h.Add("x-forwarded-proto", "http")
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}
