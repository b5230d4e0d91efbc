package bench

import (
	"strings"
	"testing"
)

// fiveFilters are five common HTTP filters in front of the router, each
// configured so the benchmark request passes through it doing its usual
// per-request work: header_mutation adds a request and a response header;
// cors has a policy (per virtual host) but the request has no Origin;
// local_ratelimit takes a token from a bucket that never runs dry; rbac
// evaluates an ALLOW policy that matches (path prefix and a Host header);
// fault is configured with a 0% abort and a 0% delay.
const fiveFilters = `          - name: envoy.filters.http.header_mutation
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.header_mutation.v3.HeaderMutation
              mutations:
                request_mutations:
                - append: { header: { key: x-bench, value: "1" } }
                response_mutations:
                - append: { header: { key: x-served-by, value: herald } }
          - name: envoy.filters.http.cors
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors
          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: bench_rl
              token_bucket: { max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 1s }
              filter_enabled: { default_value: { numerator: 100, denominator: HUNDRED } }
              filter_enforced: { default_value: { numerator: 100, denominator: HUNDRED } }
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  bench:
                    permissions: [ { url_path: { path: { prefix: /bench } } } ]
                    principals: [ { header: { name: ":authority", string_match: { exact: bench.local } } } ]
          - name: envoy.filters.http.fault
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
              abort: { http_status: 503, percentage: { numerator: 0, denominator: HUNDRED } }
              delay: { fixed_delay: 1s, percentage: { numerator: 0, denominator: HUNDRED } }
`

// corsPolicy is the virtual host's CORS policy (typed_per_filter_config).
const corsPolicy = `              typed_per_filter_config:
                envoy.filters.http.cors:
                  "@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy
                  allow_origin_string_match: [ { exact: "https://app.example" } ]
                  allow_methods: GET
`

// BenchmarkProxyHTTP1FiveFilters is BenchmarkProxyHTTP1 with five common
// HTTP filters (header_mutation, cors, local_ratelimit, rbac, fault)
// before the router: the cost of a typical filter chain per request.
func BenchmarkProxyHTTP1FiveFilters(b *testing.B) {
	backend := startHTTPBackend(b)
	y := hcmBootstrap("route: { cluster: backend }", staticCluster("backend", backend))
	y = replaceOnce(b, y, "          http_filters:\n", "          http_filters:\n"+fiveFilters)
	y = replaceOnce(b, y, "              domains: [\"*\"]\n", "              domains: [\"*\"]\n"+corsPolicy)
	h := startHerald(b, y)
	benchHTTP(b, h.addr(b, "http"), 13)
}

func replaceOnce(b *testing.B, s, old, new string) string {
	b.Helper()
	if strings.Count(s, old) != 1 {
		b.Fatalf("bootstrap template changed: %q appears %d times", old, strings.Count(s, old))
	}
	return strings.Replace(s, old, new, 1)
}
