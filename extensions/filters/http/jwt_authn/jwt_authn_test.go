package jwtauthn

import (
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/http/httpfilter/httpfiltertest"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestRegistered(t *testing.T) {
	url := registry.TypeURL(&jwtauthnv3.JwtAuthentication{})
	if e, ok := httpfilter.Registry.ByTypeURL(url); !ok || e.Name != Name {
		t.Fatalf("%s registered as %v, %v; want %s", url, e, ok, Name)
	}
	if _, ok := httpfilter.PerRouteRegistry.ByTypeURL(registry.TypeURL(&jwtauthnv3.PerRouteConfig{})); !ok {
		t.Errorf("PerRouteConfig is not registered")
	}
}

func TestBuild(t *testing.T) {
	s := newSigner(t, jose.RS256, "k1")
	keys := quoteYAML(jwks(t, s))
	t.Setenv("HERALD_TEST_JWKS", jwks(t, s))
	tests := []struct {
		name    string
		config  string
		wantErr string
	}{
		{name: "empty", config: "{}"},
		{
			name: "every supported field",
			config: `providers:
  p1:
    issuer: https://issuer.example
    audiences: [api]
    local_jwks: {inline_string: ` + keys + `}
    forward: true
    from_headers: [{name: X-Jwt, value_prefix: "Bearer "}]
    from_params: [jwt]
    from_cookies: [session]
    forward_payload_header: x-payload
    pad_forward_payload_header: true
    payload_in_metadata: payload
    header_in_metadata: header
    clock_skew_seconds: 10
    claim_to_headers: [{header_name: x-sub, claim_name: sub}, {header_name: x-nested, claim_path: [{key: a.b}]}]
    clear_route_cache: true
  p2:
    local_jwks: {environment_variable: HERALD_TEST_JWKS}
rules:
- match: {prefix: /api, headers: [{name: x-a, present_match: true}]}
  requires: {requires_any: {requirements: [{provider_name: p1}, {provider_and_audiences: {provider_name: p2, audiences: [b]}}, {allow_missing: {}}]}}
- match: {path: /exact}
  requirement_name: r1
- match: {safe_regex: {regex: "/re/[0-9]+"}}
  requires: {requires_all: {requirements: [{provider_name: p1}, {allow_missing_or_failed: {}}]}}
- match: {path_separated_prefix: /sep}
requirement_map:
  r1: {provider_name: p2}
bypass_cors_preflight: true
strip_failure_response: true
stat_prefix: mine.`,
		},
		{
			name:    "unknown provider",
			config:  `rules: [{match: {prefix: /}, requires: {provider_name: nope}}]`,
			wantErr: ".rules[0].requires.provider_name: Required provider ['nope'] is not configured.",
		},
		{
			name:    "unknown requirement_name",
			config:  `{requirement_map: {r1: {}}, rules: [{match: {prefix: /}, requirement_name: r2}]}`,
			wantErr: ".rules[0].requirement_name: Wrong requirement_name: r2. It should be one of [r1]",
		},
		{
			name:    "local jwks without keys",
			config:  `providers: {p: {local_jwks: {inline_string: '{"keys": []}'}}}`,
			wantErr: ".providers[p].local_jwks: Jwks doesn't have any valid public key",
		},
		{
			name:    "local jwks not json",
			config:  `providers: {p: {local_jwks: {inline_string: 'nope'}}}`,
			wantErr: ".providers[p].local_jwks: Jwks is an invalid JSON",
		},
		{
			name:    "missing env",
			config:  `providers: {p: {local_jwks: {environment_variable: HERALD_NO_SUCH_VAR}}}`,
			wantErr: `.providers[p].local_jwks.environment_variable: environment variable "HERALD_NO_SUCH_VAR" is not set`,
		},
		{
			name:    "subjects refused",
			config:  `providers: {p: {local_jwks: {inline_string: ` + keys + `}, subjects: {prefix: a}}}`,
			wantErr: ".providers[p].subjects: subjects is not supported by herald yet (#8)",
		},
		{
			name:    "jwt_cache_config refused",
			config:  `providers: {p: {local_jwks: {inline_string: ` + keys + `}, jwt_cache_config: {jwt_cache_size: 10}}}`,
			wantErr: ".providers[p].jwt_cache_config: jwt_cache_config is not supported by herald yet (#8)",
		},
		{
			name:    "async_fetch refused",
			config:  `providers: {p: {remote_jwks: {http_uri: {uri: "http://a/jwks", cluster: c, timeout: 1s}, async_fetch: {}}}}`,
			wantErr: ".providers[p].remote_jwks.async_fetch: async_fetch is not supported by herald yet (#8)",
		},
		{
			name:    "filter_state_rules refused",
			config:  `filter_state_rules: {name: x}`,
			wantErr: ".filter_state_rules: filter_state_rules is not supported by herald yet (#8)",
		},
		{
			name:    "query_parameters match refused",
			config:  `rules: [{match: {prefix: /, query_parameters: [{name: a, present_match: true}]}}]`,
			wantErr: ".rules[0].match.query_parameters: query_parameters is not supported by herald yet (#8)",
		},
		{
			name:    "runtime_fraction match refused",
			config:  `rules: [{match: {prefix: /, runtime_fraction: {default_value: {numerator: 1}}}}]`,
			wantErr: ".rules[0].match.runtime_fraction: ",
		},
		{
			name:    "grpc match refused",
			config:  `rules: [{match: {prefix: /, grpc: {}}}]`,
			wantErr: ".rules[0].match.grpc: grpc is not supported by herald yet (#8)",
		},
		{
			name:    "bad remote uri",
			config:  `providers: {p: {remote_jwks: {http_uri: {uri: "ftp://a/jwks", cluster: c, timeout: 1s}}}}`,
			wantErr: ".providers[p].remote_jwks.http_uri.uri: invalid URI",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := httpfiltertest.Parse(t, tc.config, &jwtauthnv3.JwtAuthentication{})
			_, err := Build(cfg, httpfiltertest.BuildContext(Name, stats.NewStore()))
			httpfiltertest.CheckBuildErr(t, err, tc.wantErr)
		})
	}
}

func TestAlgorithms(t *testing.T) {
	algs := []jose.SignatureAlgorithm{
		jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
		jose.ES256, jose.ES384, jose.ES512, jose.EdDSA, jose.HS256, jose.HS384, jose.HS512,
	}
	for _, alg := range algs {
		t.Run(string(alg), func(t *testing.T) {
			s := newSigner(t, alg, "k-"+string(alg))
			other := newSigner(t, alg, "k-"+string(alg)) // same kid, other key (RS/PS share one RSA key)
			c := build(t, fmt.Sprintf(`providers: {p: {issuer: iss, local_jwks: {inline_string: %s}}}
rules: [{match: {prefix: /}, requires: {provider_name: p}}]`, quoteYAML(jwks(t, s))), stats.NewStore())

			good := s.sign(t, claims("iss", nil))
			if o, _ := run(t, c, req("/", "authorization", "Bearer "+good), nil); o.status != httpfilter.Continue {
				t.Fatalf("valid %s token: got %+v, want Continue", alg, o)
			}
			// Flip a signature byte: the signature no longer verifies.
			parts := strings.Split(good, ".")
			sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
			sig[len(sig)/2] ^= 0xff
			bad := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)
			o, _ := run(t, c, req("/", "authorization", "Bearer "+bad), nil)
			if o.code != 401 || o.body != "Jwt verification fails" {
				t.Errorf("tampered token: got %d %q, want 401 %q", o.code, o.body, "Jwt verification fails")
			}
			if _, shared := s.priv.(*rsa.PrivateKey); !shared {
				o, _ = run(t, c, req("/", "authorization", "Bearer "+other.sign(t, claims("iss", nil))), nil)
				if o.code != 401 || o.body != "Jwt verification fails" {
					t.Errorf("token of another key: got %d %q, want 401 %q", o.code, o.body, "Jwt verification fails")
				}
			}
		})
	}
}

func TestVerify(t *testing.T) {
	s := newSigner(t, jose.RS256, "k1")
	es := newSigner(t, jose.ES256, "k2") // not in the JWKS
	c := build(t, fmt.Sprintf(`providers:
  p:
    issuer: https://issuer.example
    audiences: [api.example.com, "https://other.example/"]
    local_jwks: {inline_string: %s}
    forward_payload_header: x-jwt-payload
rules: [{match: {prefix: /}, requires: {provider_name: p}}]`, quoteYAML(jwks(t, s))), stats.NewStore())

	with := func(mod func(map[string]any)) map[string]any {
		c := claims("https://issuer.example", "api.example.com")
		mod(c)
		return c
	}
	seg := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	tests := []struct {
		name      string
		token     string // "" sends no authorization header
		wantCode  int    // 0: the request goes on
		wantBody  string
		wantAuthn string
	}{
		{name: "valid", token: s.sign(t, claims("https://issuer.example", "api.example.com"))},
		{name: "audience list with one allowed", token: s.sign(t, with(func(c map[string]any) { c["aud"] = []string{"x", "api.example.com"} }))},
		// jwt_verify_lib compares audiences without scheme and trailing slash.
		{name: "audience sanitized", token: s.sign(t, with(func(c map[string]any) { c["aud"] = "http://other.example" }))},
		{name: "expired within skew", token: s.sign(t, with(func(c map[string]any) { c["exp"] = testNow.Add(-30 * time.Second).Unix() }))},
		{
			name: "missing", wantCode: 401, wantBody: "Jwt is missing",
			wantAuthn: `Bearer realm="http://example.com/path?q=1"`,
		},
		{
			name: "expired", token: s.sign(t, with(func(c map[string]any) { c["exp"] = testNow.Add(-2 * time.Minute).Unix() })),
			wantCode: 401, wantBody: "Jwt is expired", wantAuthn: `Bearer realm="http://example.com/path?q=1", error="invalid_token"`,
		},
		{
			name: "not yet valid", token: s.sign(t, with(func(c map[string]any) { c["nbf"] = testNow.Add(2 * time.Minute).Unix() })),
			wantCode: 401, wantBody: "Jwt not yet valid",
		},
		{
			name: "unknown issuer", token: s.sign(t, claims("https://evil.example", "api.example.com")),
			wantCode: 401, wantBody: "Jwt issuer is not configured",
		},
		{
			name: "audience not allowed", token: s.sign(t, claims("https://issuer.example", "someone-else")),
			wantCode: 403, wantBody: "Audiences in Jwt are not allowed",
		},
		{
			name: "no audience", token: s.sign(t, claims("https://issuer.example", nil)),
			wantCode: 403, wantBody: "Audiences in Jwt are not allowed",
		},
		{name: "not a jwt", token: "abc", wantCode: 401, wantBody: "Jwt is not in the form of Header.Payload.Signature"},
		{name: "bad header", token: "!!.e30.c2ln", wantCode: 401, wantBody: "Jwt header is an invalid Base64url input or an invalid JSON"},
		{name: "alg not string", token: seg(map[string]any{"alg": 1}) + ".e30.c2ln", wantCode: 401, wantBody: "Jwt header [alg] field is not a string"},
		{name: "alg none", token: seg(map[string]any{"alg": "none"}) + ".e30.c2ln", wantCode: 401, wantBody: "Jwt header [alg] field value is invalid"},
		{name: "kid not string", token: seg(map[string]any{"alg": "RS256", "kid": 3}) + ".e30.c2ln", wantCode: 401, wantBody: "Jwt header [kid] field is not a string"},
		{name: "bad payload", token: seg(map[string]any{"alg": "RS256"}) + ".bm9wZQ.c2ln", wantCode: 401, wantBody: "Jwt payload is an invalid Base64 or an invalid JSON"},
		{name: "bad signature encoding", token: seg(map[string]any{"alg": "RS256"}) + ".e30.!!", wantCode: 401, wantBody: "Jwt signature is an invalid Base64"},
		{
			name: "no key for kid and alg", token: es.sign(t, claims("https://issuer.example", "api.example.com")),
			wantCode: 401, wantBody: "Jwks doesn't have key to match kid or alg from Jwt",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := req("/path?q=1", "x-jwt-payload", "forged")
			if tc.token != "" {
				h.Add("authorization", "Bearer "+tc.token)
			}
			o, cb := run(t, c, h, nil)
			if tc.wantCode == 0 {
				if o.status != httpfilter.Continue || len(cb.Replies) != 0 {
					t.Fatalf("got %+v, want Continue", o)
				}
				if got, want := h.Get("x-jwt-payload"), strings.Split(tc.token, ".")[1]; got != want {
					t.Errorf("x-jwt-payload = %q, want %q", got, want)
				}
				if h.Has("authorization") {
					t.Errorf("authorization kept; forward is false")
				}
				return
			}
			if o.status != httpfilter.Stop || o.code != tc.wantCode || o.body != tc.wantBody {
				t.Fatalf("got %v %d %q, want Stop %d %q", o.status, o.code, o.body, tc.wantCode, tc.wantBody)
			}
			if want := rcDetails(tc.wantBody); o.details != want {
				t.Errorf("details = %q, want %q", o.details, want)
			}
			if tc.wantAuthn != "" && o.authn != tc.wantAuthn {
				t.Errorf("www-authenticate = %q, want %q", o.authn, tc.wantAuthn)
			}
			if h.Has("x-jwt-payload") {
				t.Errorf("forged x-jwt-payload not removed")
			}
		})
	}
}

func TestDetails(t *testing.T) {
	if got, want := statusDetails[statusJwtMissed], "jwt_authn_access_denied{Jwt_is_missing}"; got != want {
		t.Errorf("details = %q, want %q", got, want)
	}
}

func TestExtraction(t *testing.T) {
	s := newSigner(t, jose.HS256, "")
	keys := quoteYAML(jwks(t, s))
	tok := s.sign(t, claims("iss", nil))
	tests := []struct {
		name     string
		provider string // extra provider fields, flow style
		headers  []string
		path     string
		wantOK   bool
		wantPath string // "" : unchanged
		wantGone string // a header that must be removed
		wantKept string // a header that must stay
	}{
		{name: "default bearer", headers: []string{"authorization", "Bearer " + tok}, wantOK: true, wantGone: "authorization"},
		{name: "default bearer forwarded", provider: "forward: true", headers: []string{"authorization", "Bearer " + tok}, wantOK: true, wantKept: "authorization"},
		{name: "default wrong scheme", headers: []string{"authorization", "Basic " + tok}},
		{name: "default param", path: "/p?a=1&access_token=" + tok + "&b=2", wantOK: true, wantPath: "/p?a=1&b=2"},
		{name: "default param forwarded", provider: "forward: true", path: "/p?access_token=" + tok, wantOK: true},
		{name: "custom header no prefix", provider: "from_headers: [{name: x-token}]", headers: []string{"x-token", tok}, wantOK: true, wantGone: "x-token"},
		{name: "custom header ignores authorization", provider: "from_headers: [{name: x-token}]", headers: []string{"authorization", "Bearer " + tok}},
		{name: "custom prefix", provider: `from_headers: [{name: x-token, value_prefix: "Token "}]`, headers: []string{"x-token", "Token " + tok}, wantOK: true},
		// Envoy takes the run of token characters after the prefix.
		{name: "prefix inside value", provider: `from_headers: [{name: x-token, value_prefix: "jwt="}]`, headers: []string{"x-token", `a=b, jwt="` + tok + `"`}, wantOK: true},
		{name: "custom param", provider: "from_params: [jwt]", path: "/p?jwt=" + tok, wantOK: true, wantPath: "/p"},
		{name: "cookie", provider: "from_cookies: [session]", headers: []string{"cookie", "a=b; session=" + tok + "; c=d"}, wantOK: true, wantKept: "cookie"},
		{name: "quoted cookie", provider: "from_cookies: [session]", headers: []string{"cookie", `session="` + tok + `"`}, wantOK: true},
		{name: "cookie only: no default locations", provider: "from_cookies: [session]", headers: []string{"authorization", "Bearer " + tok}},
		{name: "one good one bad token", headers: []string{"authorization", "Bearer " + tok}, path: "/p?access_token=bad"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			extra := ""
			if tc.provider != "" {
				extra = ", " + tc.provider
			}
			c := build(t, fmt.Sprintf(`providers: {p: {issuer: iss, local_jwks: {inline_string: %s}%s}}
rules: [{match: {prefix: /}, requires: {provider_name: p}}]`, keys, extra), stats.NewStore())
			path := tc.path
			if path == "" {
				path = "/"
			}
			h := req(path, tc.headers...)
			o, _ := run(t, c, h, nil)
			if got := o.status == httpfilter.Continue; got != tc.wantOK {
				t.Fatalf("allowed = %v (%+v), want %v", got, o, tc.wantOK)
			}
			if tc.wantPath != "" && h.Path() != tc.wantPath {
				t.Errorf(":path = %q, want %q", h.Path(), tc.wantPath)
			}
			if tc.wantPath == "" && h.Path() != path {
				t.Errorf(":path = %q, want it unchanged (%q)", h.Path(), path)
			}
			if tc.wantGone != "" && h.Has(tc.wantGone) {
				t.Errorf("%s kept, want it removed", tc.wantGone)
			}
			if tc.wantKept != "" && !h.Has(tc.wantKept) {
				t.Errorf("%s removed, want it kept", tc.wantKept)
			}
		})
	}
}

func TestRequirements(t *testing.T) {
	s1 := newSigner(t, jose.ES256, "a")
	s2 := newSigner(t, jose.EdDSA, "b")
	providers := fmt.Sprintf(`providers:
  p1: {issuer: iss1, audiences: [aud1], local_jwks: {inline_string: %s}}
  p2: {issuer: iss2, local_jwks: {inline_string: %s}, from_headers: [{name: x-jwt2}]}
`, quoteYAML(jwks(t, s1)), quoteYAML(jwks(t, s2)))
	good1 := []string{"authorization", "Bearer " + s1.sign(t, claims("iss1", "aud1"))}
	good2 := []string{"x-jwt2", s2.sign(t, claims("iss2", nil))}
	bad1 := []string{"authorization", "Bearer " + s1.sign(t, claims("iss1", "aud-other"))}
	forged1 := []string{"authorization", "Bearer " + s2.sign(t, claims("iss1", "aud1"))} // p2's key, p1's issuer
	both := append(append([]string{}, good1...), good2...)

	tests := []struct {
		name     string
		requires string
		headers  []string
		wantCode int // 0: allowed
		wantBody string
	}{
		{name: "provider good", requires: "{provider_name: p1}", headers: good1},
		{name: "provider missing", requires: "{provider_name: p1}", wantCode: 401, wantBody: "Jwt is missing"},
		// p2's token is in x-jwt2, which p1 does not read.
		{name: "provider other token", requires: "{provider_name: p1}", headers: good2, wantCode: 401, wantBody: "Jwt is missing"},
		{name: "provider forged", requires: "{provider_name: p1}", headers: forged1, wantCode: 401, wantBody: "Jwks doesn't have key to match kid or alg from Jwt"},
		{name: "provider_and_audiences overrides", requires: "{provider_and_audiences: {provider_name: p1, audiences: [aud-other]}}", headers: bad1},
		{name: "provider_and_audiences refuses", requires: "{provider_and_audiences: {provider_name: p1, audiences: [aud-other]}}", headers: good1, wantCode: 403, wantBody: "Audiences in Jwt are not allowed"},
		{name: "any first", requires: "{requires_any: {requirements: [{provider_name: p1}, {provider_name: p2}]}}", headers: good1},
		{name: "any second", requires: "{requires_any: {requirements: [{provider_name: p1}, {provider_name: p2}]}}", headers: good2},
		{name: "any none", requires: "{requires_any: {requirements: [{provider_name: p1}, {provider_name: p2}]}}", wantCode: 401, wantBody: "Jwt is missing"},
		// requires_any reports the error that is neither missing nor unknown issuer.
		{name: "any bad one", requires: "{requires_any: {requirements: [{provider_name: p2}, {provider_name: p1}]}}", headers: bad1, wantCode: 403, wantBody: "Audiences in Jwt are not allowed"},
		{name: "all both", requires: "{requires_all: {requirements: [{provider_name: p1}, {provider_name: p2}]}}", headers: both},
		{name: "all one", requires: "{requires_all: {requirements: [{provider_name: p1}, {provider_name: p2}]}}", headers: good1, wantCode: 401, wantBody: "Jwt is missing"},
		{name: "allow_missing none", requires: "{allow_missing: {}}"},
		{name: "allow_missing good", requires: "{allow_missing: {}}", headers: good2},
		{name: "allow_missing bad", requires: "{allow_missing: {}}", headers: bad1, wantCode: 403, wantBody: "Audiences in Jwt are not allowed"},
		{name: "allow_missing_or_failed bad", requires: "{allow_missing_or_failed: {}}", headers: bad1},
		{name: "any with allow_missing: missing", requires: "{requires_any: {requirements: [{provider_name: p1}, {allow_missing: {}}]}}"},
		{name: "any with allow_missing: bad", requires: "{requires_any: {requirements: [{provider_name: p1}, {allow_missing: {}}]}}", headers: bad1, wantCode: 403, wantBody: "Audiences in Jwt are not allowed"},
		{name: "any with allow_missing_or_failed: bad", requires: "{requires_any: {requirements: [{provider_name: p1}, {allow_missing_or_failed: {}}]}}", headers: bad1},
		{name: "empty requirement", requires: "{}", headers: bad1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := build(t, providers+"rules: [{match: {prefix: /}, requires: "+tc.requires+"}]", stats.NewStore())
			o, _ := run(t, c, req("/", tc.headers...), nil)
			if tc.wantCode == 0 {
				if o.status != httpfilter.Continue {
					t.Fatalf("got %+v, want allowed", o)
				}
				return
			}
			if o.code != tc.wantCode || o.body != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", o.code, o.body, tc.wantCode, tc.wantBody)
			}
		})
	}
}

func TestRulesAndPerRoute(t *testing.T) {
	s := newSigner(t, jose.RS256, "k")
	store := stats.NewStore()
	c := build(t, fmt.Sprintf(`providers: {p: {local_jwks: {inline_string: %s}}}
rules:
- match: {prefix: /public}
- match: {path: /exact, headers: [{name: x-check, exact_match: "yes"}]}
  requires: {provider_name: p}
- match: {safe_regex: {regex: "/re/[0-9]+"}}
  requires: {provider_name: p}
- match: {prefix: /API, case_sensitive: false}
  requirement_name: r
requirement_map:
  r: {provider_name: p}
  s: {allow_missing: {}}
bypass_cors_preflight: true`, quoteYAML(jwks(t, s))), store)
	good := []string{"authorization", "Bearer " + s.sign(t, claims("x", nil))}

	disabled, _ := BuildPerRoute(&jwtauthnv3.PerRouteConfig{RequirementSpecifier: &jwtauthnv3.PerRouteConfig_Disabled{Disabled: true}}, httpfilter.BuildContext{})
	named, _ := BuildPerRoute(&jwtauthnv3.PerRouteConfig{RequirementSpecifier: &jwtauthnv3.PerRouteConfig_RequirementName{RequirementName: "s"}}, httpfilter.BuildContext{})
	wrong, _ := BuildPerRoute(&jwtauthnv3.PerRouteConfig{RequirementSpecifier: &jwtauthnv3.PerRouteConfig_RequirementName{RequirementName: "nope"}}, httpfilter.BuildContext{})

	tests := []struct {
		name        string
		method      string
		path        string
		headers     []string
		route       httpfilter.Route
		wantCode    int
		wantBody    string
		wantDetails string
	}{
		{name: "public needs nothing", path: "/public/x"},
		{name: "unmatched needs nothing", path: "/other"},
		{name: "exact without header", path: "/exact"},
		{name: "exact with header", path: "/exact?a=b", headers: []string{"x-check", "yes"}, wantCode: 401, wantBody: "Jwt is missing"},
		{name: "exact with header and token", path: "/exact", headers: append([]string{"x-check", "yes"}, good...)},
		{name: "regex", path: "/re/12", wantCode: 401, wantBody: "Jwt is missing"},
		{name: "regex is full match", path: "/re/12x"},
		{name: "requirement_name case insensitive", path: "/api/v1", wantCode: 401, wantBody: "Jwt is missing"},
		{name: "per-route disabled", path: "/api/v1", route: httpfiltertest.Route{Name: disabled}},
		{name: "per-route requirement", path: "/api/v1", route: httpfiltertest.Route{Name: named}},
		{
			name: "per-route wrong requirement", path: "/public", route: httpfiltertest.Route{Name: wrong},
			wantCode: 403, wantBody: "Failed JWT authentication: Wrong requirement_name: nope. It should be one of [r,s]",
			wantDetails: "jwt_authn_access_denied{Wrong_requirement_name:_nope._It_should_be_one_of_[r,s]}",
		},
		{name: "cors preflight bypassed", method: "OPTIONS", path: "/api", headers: []string{"origin", "http://a", "access-control-request-method", "GET"}},
		{name: "options without origin", method: "OPTIONS", path: "/api", wantCode: 401, wantBody: "Jwt is missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := req(tc.path, tc.headers...)
			if tc.method != "" {
				h.Set(":method", tc.method)
			}
			o, _ := run(t, c, h, tc.route)
			if tc.wantCode == 0 {
				if o.status != httpfilter.Continue {
					t.Fatalf("got %+v, want allowed", o)
				}
				return
			}
			if o.code != tc.wantCode || o.body != tc.wantBody {
				t.Fatalf("got %d %q, want %d %q", o.code, o.body, tc.wantCode, tc.wantBody)
			}
			if tc.wantDetails != "" && o.details != tc.wantDetails {
				t.Errorf("details = %q, want %q", o.details, tc.wantDetails)
			}
		})
	}
	for name, want := range map[string]uint64{"allowed": 8, "denied": 5, "cors_preflight_bypassed": 1} {
		if got := store.Counter("http.ingress.jwt_authn." + name).Value(); got != want {
			t.Errorf("http.ingress.jwt_authn.%s = %d, want %d", name, got, want)
		}
	}
}

func TestForwarding(t *testing.T) {
	s := newSigner(t, jose.RS256, "k")
	c := build(t, fmt.Sprintf(`providers:
  p:
    local_jwks: {inline_string: %s}
    forward: true
    forward_payload_header: x-payload
    pad_forward_payload_header: true
    payload_in_metadata: my_payload
    header_in_metadata: my_header
    claim_to_headers:
    - {header_name: x-sub, claim_name: sub}
    - {header_name: x-n, claim_name: nested.n}
    - {header_name: x-f, claim_name: f}
    - {header_name: x-b, claim_name: b}
    - {header_name: x-dotted, claim_path: [{key: "http://x/y"}]}
    - {header_name: x-list, claim_name: list}
rules: [{match: {prefix: /}, requires: {provider_name: p}}]`, quoteYAML(jwks(t, s))), stats.NewStore())
	cl := claims("iss", nil)
	cl["nested"] = map[string]any{"n": 42}
	cl["f"] = 1.5
	cl["b"] = true
	cl["http://x/y"] = "dotted"
	cl["list"] = []string{"a"}
	tok := s.sign(t, cl)

	// A client-sent x-sub is removed even when verification is skipped.
	h := req("/", "authorization", "Bearer "+tok, "x-sub", "forged", "x-list", "forged")
	o, cb := run(t, c, h, nil)
	if o.status != httpfilter.Continue {
		t.Fatalf("got %+v, want allowed", o)
	}
	got := map[string]string{}
	for _, n := range []string{"x-sub", "x-n", "x-f", "x-b", "x-dotted", "x-list", "authorization"} {
		got[n] = strings.Join(h.Values(nil, n), "|")
	}
	want := map[string]string{
		"x-sub": "user@example.com", "x-n": "42", "x-f": "1.500000", "x-b": "true", "x-dotted": "dotted",
		"x-list": "", "authorization": "Bearer " + tok,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("headers (-want +got):\n%s", d)
	}
	payload := h.Get("x-payload")
	if len(payload)%4 != 0 || strings.TrimRight(payload, "=") != strings.Split(tok, ".")[1] {
		t.Errorf("x-payload = %q, want the padded payload of %q", payload, tok)
	}

	md := cb.Info.DynamicMetadataFor(Name)
	if md == nil {
		t.Fatalf("no dynamic metadata under %s", Name)
	}
	b, _ := protojson.Marshal(md)
	var m map[string]map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if m["my_payload"]["sub"] != "user@example.com" || m["my_header"]["alg"] != "RS256" || m["my_header"]["kid"] != "k" {
		t.Errorf("dynamic metadata = %s", b)
	}

	// A failed request records nothing.
	_, cb = run(t, c, req("/"), nil)
	if cb.Info.DynamicMetadata != nil {
		t.Errorf("dynamic metadata on a refused request: %v", cb.Info.DynamicMetadata)
	}
}

func TestStripFailureResponse(t *testing.T) {
	s := newSigner(t, jose.RS256, "k")
	c := build(t, fmt.Sprintf(`providers: {p: {local_jwks: {inline_string: %s}}}
rules: [{match: {prefix: /}, requires: {provider_name: p}}]
strip_failure_response: true`, quoteYAML(jwks(t, s))), stats.NewStore())
	o, _ := run(t, c, req("/"), nil)
	if o.code != 401 || o.body != "" || o.authn != "" || o.details != "jwt_authn_access_denied{Jwt_is_missing}" {
		t.Errorf("got %+v, want a bare 401 with details", o)
	}
}

func TestParseJWKS(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want status
		keys int
	}{
		{name: "not json", in: "x", want: statusJwksParseError},
		{name: "no keys", in: "{}", want: statusJwksNoKeys},
		{name: "keys not array", in: `{"keys": 1}`, want: statusJwksBadKeys},
		{name: "no usable key", in: `{"keys": [{"kty": "nope"}]}`, want: statusJwksNoValidKeys},
		{name: "oct key", in: `{"keys": [{"kty": "oct", "k": "c2VjcmV0", "alg": "HS256"}, {"kty": "nope"}]}`, want: statusOK, keys: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ks, st := parseJWKS([]byte(tc.in))
			if st != tc.want {
				t.Fatalf("status %q, want %q", st, tc.want)
			}
			if st == statusOK && len(ks.keys) != tc.keys {
				t.Errorf("%d keys, want %d", len(ks.keys), tc.keys)
			}
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	s := newSigner(b, jose.ES256, "k")
	c := build(b, fmt.Sprintf(`providers: {p: {local_jwks: {inline_string: %s}, forward: true}}
rules: [{match: {prefix: /}, requires: {provider_name: p}}]`, quoteYAML(jwks(b, s))), stats.NewStore())
	tok := "Bearer " + s.sign(b, claims("iss", nil))
	h := req("/", "authorization", tok)
	cb := &httpfiltertest.Callbacks{}
	b.ReportAllocs()
	for b.Loop() {
		f := c.newFilter(cb).(*Filter)
		if f.DecodeHeaders(h, true) != httpfilter.Continue {
			b.Fatal("refused")
		}
		f.OnDestroy()
	}
}
