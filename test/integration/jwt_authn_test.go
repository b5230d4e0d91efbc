package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	nethttp "net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/herald-proxy/herald/internal/testutil"
)

// jwtSign signs claims as a compact JWT with key (alg, kid).
func jwtSign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestHTTPFilterJwtAuthn: envoy.filters.http.jwt_authn on the real binary.
// Provider "remote" (ES256) fetches its JWKS from a backend through the
// cluster "jwks" and caches it; provider "local" (HS256) has an inline
// JWKS and reads x-local-jwt. /public needs nothing (a rule without
// requires), /open disables the filter per route, /local uses a
// requirement_map entry per route, everything else requires "remote".
// https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/jwt_authn_filter
func TestHTTPFilterJwtAuthn(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	secret := []byte("0123456789abcdef0123456789abcdef")
	remoteJWKS, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &ecKey.PublicKey, KeyID: "ec1", Algorithm: "ES256"}}})
	localJWKS, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: secret, KeyID: "hs1", Algorithm: "HS256"}}})

	var fetches atomic.Int64
	jwksAddr := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		if r.URL.Path != "/.well-known/jwks.json" {
			w.WriteHeader(404)
			return
		}
		fetches.Add(1)
		w.Write(remoteJWKS)
	}))
	// The app echoes what the filter forwarded.
	var hits atomic.Int64
	app := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		hits.Add(1)
		w.Header().Set("x-seen-payload", r.Header.Get("x-jwt-payload"))
		w.Header().Set("x-seen-authorization", r.Header.Get("authorization"))
		w.Header().Set("x-seen-sub", r.Header.Get("x-sub"))
		io.WriteString(w, "backend")
	}))

	logPath := filepath.Join(t.TempDir(), "access.log")
	vhosts := `            - name: app
              domains: ["*"]
              routes:
              - match: { prefix: "/open" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.jwt_authn:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig
                    disabled: true
              - match: { prefix: "/local" }
                route: { cluster: app }
                typed_per_filter_config:
                  envoy.filters.http.jwt_authn:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.PerRouteConfig
                    requirement_name: local-only
              - match: { prefix: "/" }
                route: { cluster: app }`
	filters := fmt.Sprintf(`          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                remote:
                  issuer: https://issuer.test
                  audiences: [api.test]
                  remote_jwks:
                    http_uri:
                      uri: http://keys.test/.well-known/jwks.json
                      cluster: jwks
                      timeout: 2s
                    cache_duration: 300s
                  forward_payload_header: x-jwt-payload
                  claim_to_headers: [{ header_name: x-sub, claim_name: sub }]
                  payload_in_metadata: jwt_payload
                local:
                  issuer: local
                  local_jwks: { inline_string: %q }
                  from_headers: [{ name: x-local-jwt }]
              rules:
              - match: { prefix: /public }
              - match: { prefix: / }
                requires: { provider_name: remote }
              requirement_map:
                local-only: { provider_name: local }
`, string(localJWKS))
	l := filtersListener("jwt", vhosts, filters)
	l = strings.Replace(l, "          stat_prefix: ingress_http\n", fmt.Sprintf(`          stat_prefix: ingress_http
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format:
                text_format_source:
                  inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%% %%RESPONSE_CODE_DETAILS%% %%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload:sub)%%\n"
`, logPath), 1)
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("app", app), staticCluster("jwks", jwksAddr)), "--file-flush-interval-msec", "50")
	addr := h.ListenerAddr("jwt")
	base := "http://" + addr
	c := newClient()

	now := time.Now().Unix()
	claims := func(iss string, aud string) map[string]any {
		return map[string]any{"iss": iss, "aud": aud, "sub": "alice", "iat": now, "exp": now + 3600}
	}
	good := jwtSign(t, jose.ES256, ecKey, "ec1", claims("https://issuer.test", "api.test"))
	forged := jwtSign(t, jose.ES256, otherKey, "ec1", claims("https://issuer.test", "api.test"))
	wrongAud := jwtSign(t, jose.ES256, ecKey, "ec1", claims("https://issuer.test", "other.test"))
	local := jwtSign(t, jose.HS256, secret, "hs1", claims("local", ""))
	bearer := func(tok string) map[string]string { return map[string]string{"authorization": "Bearer " + tok} }

	steps := []struct {
		path        string
		hdr         map[string]string
		wantCode    int
		wantBody    string
		wantDetails string
		wantAuthn   string
		wantSub     string // the payload's sub in the dynamic metadata, as logged
	}{
		{path: "/api", hdr: bearer(good), wantCode: 200, wantBody: "backend", wantDetails: "via_upstream", wantSub: "alice"},
		{
			path: "/api?x=1", wantCode: 401, wantBody: "Jwt is missing", wantDetails: "jwt_authn_access_denied{Jwt_is_missing}",
			wantAuthn: `Bearer realm="http://` + addr + `/api?x=1"`,
		},
		{
			path: "/forged", hdr: bearer(forged), wantCode: 401, wantBody: "Jwt verification fails",
			wantDetails: "jwt_authn_access_denied{Jwt_verification_fails}",
			wantAuthn:   `Bearer realm="http://` + addr + `/forged", error="invalid_token"`,
		},
		{
			path: "/aud", hdr: bearer(wrongAud), wantCode: 403, wantBody: "Audiences in Jwt are not allowed",
			wantDetails: "jwt_authn_access_denied{Audiences_in_Jwt_are_not_allowed}",
		},
		{path: "/open/x", wantCode: 200, wantBody: "backend", wantDetails: "via_upstream"},
		{path: "/public/x", wantCode: 200, wantBody: "backend", wantDetails: "via_upstream"},
		{path: "/local/x", hdr: map[string]string{"x-local-jwt": local}, wantCode: 200, wantBody: "backend", wantDetails: "via_upstream"},
		// /local's requirement is the local provider only: the remote token does not count.
		{path: "/local/y", hdr: bearer(good), wantCode: 401, wantBody: "Jwt is missing", wantDetails: "jwt_authn_access_denied{Jwt_is_missing}"},
	}
	for i, s := range steps {
		code, hdr, body, _ := do(t, c, "GET", base+s.path, s.hdr)
		if code != s.wantCode || body != s.wantBody {
			t.Errorf("step %d GET %s: %d %q, want %d %q", i, s.path, code, body, s.wantCode, s.wantBody)
		}
		if s.wantAuthn != "" && hdr.Get("www-authenticate") != s.wantAuthn {
			t.Errorf("step %d GET %s: www-authenticate %q, want %q", i, s.path, hdr.Get("www-authenticate"), s.wantAuthn)
		}
		if i == 0 {
			// The payload is forwarded base64url-encoded, the token removed
			// (forward: false), the sub claim copied.
			wantPayload := strings.Split(good, ".")[1]
			if got := hdr.Get("x-seen-payload"); got != wantPayload {
				t.Errorf("backend saw x-jwt-payload %q, want %q", got, wantPayload)
			} else if dec, err := base64.RawURLEncoding.DecodeString(got); err != nil || !strings.Contains(string(dec), `"sub":"alice"`) {
				t.Errorf("forwarded payload %q does not decode to the claims (%v)", dec, err)
			}
			if got := hdr.Get("x-seen-authorization"); got != "" {
				t.Errorf("backend saw authorization %q, want it removed", got)
			}
			if got := hdr.Get("x-seen-sub"); got != "alice" {
				t.Errorf("backend saw x-sub %q, want alice", got)
			}
		}
	}
	if n := hits.Load(); n != 4 {
		t.Errorf("backend saw %d requests, want 4", n)
	}
	// One fetch served the three requests that reached signature checks.
	if n := fetches.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1 (cached)", n)
	}
	lines := waitLines(t, logPath, len(steps))
	for _, s := range steps {
		sub := s.wantSub
		if sub == "" {
			sub = "-"
		}
		want := fmt.Sprintf("%s %d %s %s", s.path, s.wantCode, s.wantDetails, sub)
		if !slices.Contains(lines, want) {
			t.Errorf("access log has no line %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	waitStat(t, h, "http.ingress_http.jwt_authn.allowed", 4)
	waitStat(t, h, "http.ingress_http.jwt_authn.denied", 4)
	waitStat(t, h, "http.ingress_http.jwt_authn.jwks_fetch_success", 1)
	waitStat(t, h, "http.ingress_http.jwt_authn.jwks_fetch_failed", 0)
	waitStat(t, h, "cluster.jwks.upstream_rq_200", 1)
}
