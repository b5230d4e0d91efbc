package integration

import (
	"io"
	nethttp "net/http"
	"strings"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil"
)

// echoBackend answers with its name and reflects what it received: the
// request URI in x-seen-path, Host in x-seen-host and every x-* request
// header as x-seen-<name> (multiple values joined with "|").
func echoBackend(t *testing.T, name string) string {
	return testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("x-backend-name", name)
		w.Header().Set("x-seen-path", r.URL.RequestURI())
		w.Header().Set("x-seen-host", r.Host)
		for k, vs := range r.Header {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, "x-") && !strings.HasPrefix(lk, "x-envoy") && lk != "x-request-id" && lk != "x-forwarded-proto" {
				w.Header().Set("x-seen-"+lk[2:], strings.Join(vs, "|"))
			}
		}
		io.WriteString(w, name)
	}))
}

// TestExtraRouting drives the route table through the binary: matchers,
// rewrites, header mutation at three levels, cluster_header, virtual host
// selection by :authority (port included) and case-insensitive matching.
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto
func TestExtraRouting(t *testing.T) {
	t.Parallel()
	echo := echoBackend(t, "echo")
	blue := echoBackend(t, "blue")
	green := echoBackend(t, "green")
	routeConfigExtra := `            request_headers_to_add:
            - header: { key: x-level-rc, value: rc }
            - header: { key: x-shared, value: rc }
            - header: { key: x-over, value: rc }
              append_action: OVERWRITE_IF_EXISTS_OR_ADD
            response_headers_to_add:
            - header: { key: x-resp-rc, value: rc }
            - header: { key: x-resp-over, value: rc }
              append_action: OVERWRITE_IF_EXISTS_OR_ADD
`
	vhosts := `            - name: exact
              domains: ["svc.example"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "vh-exact" } }
            - name: ported
              domains: ["svc.example:8080"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "vh-ported" } }
            - name: wild
              domains: ["*.wild.example"]
              routes:
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "vh-wild" } }
            - name: catchall
              domains: ["*"]
              request_headers_to_add:
              - header: { key: x-level-vh, value: vh }
              - header: { key: x-shared, value: vh }
              - header: { key: x-over, value: vh }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              response_headers_to_add:
              - header: { key: x-resp-vh, value: vh }
              - header: { key: x-resp-over, value: vh }
                append_action: OVERWRITE_IF_EXISTS_OR_ADD
              routes:
              - match:
                  prefix: "/h"
                  headers: [{ name: x-mode, string_match: { exact: blue } }]
                direct_response: { status: 200, body: { inline_string: "h-exact" } }
              - match:
                  prefix: "/h"
                  headers: [{ name: x-mode, string_match: { prefix: gr } }]
                direct_response: { status: 200, body: { inline_string: "h-prefix" } }
              - match:
                  prefix: "/h"
                  headers: [{ name: x-flag, present_match: true }]
                direct_response: { status: 200, body: { inline_string: "h-present" } }
              - match:
                  prefix: "/h"
                  headers: [{ name: x-mode, string_match: { exact: red }, invert_match: true }]
                direct_response: { status: 200, body: { inline_string: "h-invert" } }
              - match: { prefix: "/h" }
                direct_response: { status: 200, body: { inline_string: "h-fallback" } }
              - match:
                  prefix: "/q"
                  query_parameters: [{ name: debug, string_match: { exact: "1" } }]
                direct_response: { status: 200, body: { inline_string: "q-exact" } }
              - match:
                  prefix: "/q"
                  query_parameters: [{ name: flag, present_match: true }]
                direct_response: { status: 200, body: { inline_string: "q-present" } }
              - match: { prefix: "/q" }
                direct_response: { status: 200, body: { inline_string: "q-fallback" } }
              - match: { prefix: "/old/" }
                route: { cluster: echo, prefix_rewrite: "/new/" }
              - match: { prefix: "/re/" }
                route:
                  cluster: echo
                  regex_rewrite:
                    pattern: { regex: '^/re/(\w+)/(\w+)$' }
                    substitution: '/\2/\1'
              - match: { prefix: "/rw-host" }
                route: { cluster: echo, host_rewrite_literal: rewritten.example }
              - match: { prefix: "/add-headers" }
                route: { cluster: echo }
                request_headers_to_add:
                - header: { key: x-level-rt, value: rt }
                - header: { key: x-shared, value: rt }
                - header: { key: x-over, value: rt }
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
                response_headers_to_add:
                - header: { key: x-resp-rt, value: rt }
                - header: { key: x-resp-over, value: rt }
                  append_action: OVERWRITE_IF_EXISTS_OR_ADD
              - match: { prefix: "/ch" }
                route: { cluster_header: x-target }
              - match: { prefix: "/CaSe", case_sensitive: false }
                direct_response: { status: 200, body: { inline_string: "case-insensitive" } }
              - match: { prefix: "/Sens" }
                direct_response: { status: 200, body: { inline_string: "case-sensitive" } }
              - match: { prefix: "/" }
                direct_response: { status: 200, body: { inline_string: "catchall" } }`
	l := extraHCMListener(hcmSpec{name: "l", routeConfigExtra: routeConfigExtra, vhosts: vhosts})
	h := testutil.Start(t, bootstrap([]string{l}, staticCluster("echo", echo), staticCluster("blue", blue), staticCluster("green", green)))
	base := "http://" + h.ListenerAddr("l")
	c := newClient()
	tests := []struct {
		name     string
		host     string
		path     string
		headers  map[string]string
		wantCode int
		wantBody string
		// wantHdr are response headers to check ("" means absent).
		wantHdr map[string]string
		// wantMulti are response headers whose values are checked as a list.
		wantMulti map[string][]string
	}{
		{name: "header exact", path: "/h", headers: map[string]string{"x-mode": "blue"}, wantBody: "h-exact"},
		{name: "header prefix", path: "/h", headers: map[string]string{"x-mode": "green"}, wantBody: "h-prefix"},
		{name: "header present with empty value", path: "/h", headers: map[string]string{"x-flag": ""}, wantBody: "h-present"},
		{name: "header inverted exact matches another value", path: "/h", headers: map[string]string{"x-mode": "purple"}, wantBody: "h-invert"},
		{name: "header inverted exact rejects its value", path: "/h", headers: map[string]string{"x-mode": "red"}, wantBody: "h-fallback"},
		// Envoy: a missing header never matches, even inverted (unless
		// treat_missing_header_as_empty).
		{name: "header inverted does not match a missing header", path: "/h", wantBody: "h-fallback"},
		{name: "query exact", path: "/q?debug=1", wantBody: "q-exact"},
		{name: "query exact mismatch", path: "/q?debug=2", wantBody: "q-fallback"},
		{name: "query present", path: "/q?x=1&flag", wantBody: "q-present"},
		{name: "query absent", path: "/q", wantBody: "q-fallback"},
		{name: "prefix rewrite keeps the rest and the query", path: "/old/a/b?x=1", wantBody: "echo",
			wantHdr: map[string]string{"x-seen-path": "/new/a/b?x=1"}},
		{name: "regex rewrite on the path only", path: "/re/one/two?x=1", wantBody: "echo",
			wantHdr: map[string]string{"x-seen-path": "/two/one?x=1"}},
		{name: "host rewrite literal", host: "original.example", path: "/rw-host", wantBody: "echo",
			wantHdr: map[string]string{"x-seen-host": "rewritten.example"}},
		{name: "headers to add at three levels", path: "/add-headers", headers: map[string]string{"x-over": "client"}, wantBody: "echo",
			wantHdr: map[string]string{
				"x-seen-level-rt": "rt", "x-seen-level-vh": "vh", "x-seen-level-rc": "rc",
				// Appends run route, then virtual host, then route configuration.
				"x-seen-shared": "rt|vh|rc",
				// Overwrites: the least specific level is applied last and wins
				// (most_specific_header_mutations_wins is false).
				"x-seen-over": "rc",
			},
			wantMulti: map[string][]string{
				"x-resp-rt": {"rt"}, "x-resp-vh": {"vh"}, "x-resp-rc": {"rc"},
				"x-resp-over": {"rc"},
			}},
		{name: "route config headers on a direct response", path: "/", wantBody: "catchall",
			wantMulti: map[string][]string{"x-resp-vh": {"vh"}, "x-resp-rc": {"rc"}}},
		{name: "cluster header", path: "/ch", headers: map[string]string{"x-target": "blue"}, wantBody: "blue"},
		{name: "cluster header other cluster", path: "/ch", headers: map[string]string{"x-target": "green"}, wantBody: "green"},
		// Envoy: cluster_not_found_response_code defaults to 503.
		{name: "cluster header unknown cluster", path: "/ch", headers: map[string]string{"x-target": "nope"}, wantCode: 503},
		{name: "cluster header missing", path: "/ch", wantCode: 503},
		{name: "authority exact", host: "svc.example", path: "/", wantBody: "vh-exact"},
		{name: "authority is case-insensitive", host: "SVC.Example", path: "/", wantBody: "vh-exact"},
		{name: "authority with port matches the ported domain", host: "svc.example:8080", path: "/", wantBody: "vh-ported"},
		// The port is part of the host match unless
		// ignore_port_in_host_matching: another port falls to "*".
		{name: "authority with another port", host: "svc.example:9090", path: "/", wantBody: "catchall"},
		{name: "suffix wildcard", host: "a.wild.example", path: "/", wantBody: "vh-wild"},
		{name: "case-insensitive prefix", path: "/case/x", wantBody: "case-insensitive"},
		{name: "case-sensitive prefix by default", path: "/sens/x", wantBody: "catchall"},
		{name: "case-sensitive prefix exact case", path: "/Sens/x", wantBody: "case-sensitive"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := nethttp.NewRequest("GET", base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.host != "" {
				req.Host = tc.host
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantCode := tc.wantCode
			if wantCode == 0 {
				wantCode = 200
			}
			if resp.StatusCode != wantCode || (tc.wantBody != "" && string(b) != tc.wantBody) {
				t.Fatalf("got %d %q, want %d %q", resp.StatusCode, b, wantCode, tc.wantBody)
			}
			for k, want := range tc.wantHdr {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
			for k, want := range tc.wantMulti {
				if got := resp.Header.Values(k); strings.Join(got, "|") != strings.Join(want, "|") {
					t.Errorf("%s = %q, want %q", k, got, want)
				}
			}
		})
	}
}
