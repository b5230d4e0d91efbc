package router

import (
	"testing"
)

// oneRoute builds a table whose single catch-all virtual host has one route
// with the given match (YAML flow mapping) named "hit".
func oneRoute(t *testing.T, match string) *Table {
	t.Helper()
	return mustBuild(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes: [{name: hit, match: `+match+`, route: {cluster: c}}]`)
}

func TestPathMatch(t *testing.T) {
	tests := []struct {
		name  string
		match string
		path  string
		want  bool
	}{
		{name: "prefix", match: `{prefix: "/api"}`, path: "/api/v1", want: true},
		{name: "prefix is not a segment match", match: `{prefix: "/api"}`, path: "/apiary", want: true},
		{name: "prefix miss", match: `{prefix: "/api"}`, path: "/ap", want: false},
		{name: "prefix is case-sensitive by default", match: `{prefix: "/api"}`, path: "/API", want: false},
		{name: "prefix case-insensitive", match: `{prefix: "/api", case_sensitive: false}`, path: "/API/x", want: true},
		{name: "prefix ignores the query", match: `{prefix: "/a?x"}`, path: "/a?x=1", want: false},
		{name: "path exact", match: `{path: "/login"}`, path: "/login", want: true},
		{name: "path ignores the query", match: `{path: "/login"}`, path: "/login?next=/", want: true},
		{name: "path ignores the fragment", match: `{path: "/login"}`, path: "/login#top", want: true},
		{name: "path is exact", match: `{path: "/login"}`, path: "/login/", want: false},
		{name: "path case-insensitive", match: `{path: "/login", case_sensitive: false}`, path: "/LOGIN", want: true},
		{name: "regex is a full match", match: `{safe_regex: {regex: "/v[0-9]+"}}`, path: "/v12", want: true},
		{name: "regex must match all of it", match: `{safe_regex: {regex: "/v[0-9]+"}}`, path: "/v12/x", want: false},
		{name: "regex ignores the query", match: `{safe_regex: {regex: "/v[0-9]+"}}`, path: "/v1?a=b", want: true},
		// Envoy: case_sensitive does not apply to safe_regex.
		{name: "regex ignores case_sensitive", match: `{safe_regex: {regex: "/v[0-9]+"}, case_sensitive: false}`, path: "/V1", want: false},
		{name: "path_separated_prefix exact", match: `{path_separated_prefix: "/api"}`, path: "/api", want: true},
		{name: "path_separated_prefix segment", match: `{path_separated_prefix: "/api"}`, path: "/api/x", want: true},
		{name: "path_separated_prefix with query", match: `{path_separated_prefix: "/api"}`, path: "/api?x", want: true},
		{name: "path_separated_prefix not a segment", match: `{path_separated_prefix: "/api"}`, path: "/apiary", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, _ := oneRoute(t, tc.match).Match(req("h", tc.path))
			if got := r != nil; got != tc.want {
				t.Errorf("%s against %q: matched = %v, want %v", tc.match, tc.path, got, tc.want)
			}
		})
	}
}

func TestIgnorePathParameters(t *testing.T) {
	tbl := mustBuild(t, `
ignore_path_parameters_in_path_matching: true
virtual_hosts:
- name: v
  domains: ["*"]
  routes: [{name: hit, match: {path: "/a/b"}, route: {cluster: c}}]`)
	if r, _ := tbl.Match(req("h", "/a/b;jsessionid=1?x=1")); r == nil {
		t.Error("path with parameters did not match")
	}
	if r, _ := oneRoute(t, `{path: "/a/b"}`).Match(req("h", "/a/b;jsessionid=1")); r != nil {
		t.Error("path parameters ignored without the option")
	}
}

func TestHeaderMatch(t *testing.T) {
	tests := []struct {
		name    string
		matcher string
		headers []string
		want    bool
	}{
		{name: "exact", matcher: `{name: x-a, exact_match: "v"}`, headers: []string{"x-a", "v"}, want: true},
		{name: "exact miss", matcher: `{name: x-a, exact_match: "v"}`, headers: []string{"x-a", "w"}, want: false},
		{name: "exact missing header", matcher: `{name: x-a, exact_match: "v"}`, want: false},
		{name: "exact inverted", matcher: `{name: x-a, exact_match: "v", invert_match: true}`, headers: []string{"x-a", "w"}, want: true},
		// Envoy: a missing header never matches, inverted or not, unless present_match.
		{name: "exact inverted missing", matcher: `{name: x-a, exact_match: "v", invert_match: true}`, want: false},
		{name: "matcher name is case-insensitive", matcher: `{name: X-A, exact_match: "v"}`, headers: []string{"x-a", "v"}, want: true},
		{name: "several values are joined", matcher: `{name: x-a, exact_match: "1,2"}`, headers: []string{"x-a", "1", "x-a", "2"}, want: true},
		{name: "prefix", matcher: `{name: x-a, prefix_match: "ab"}`, headers: []string{"x-a", "abc"}, want: true},
		{name: "prefix inverted", matcher: `{name: x-a, prefix_match: "ab", invert_match: true}`, headers: []string{"x-a", "abc"}, want: false},
		{name: "suffix", matcher: `{name: x-a, suffix_match: "bc"}`, headers: []string{"x-a", "abc"}, want: true},
		{name: "contains", matcher: `{name: x-a, contains_match: "b"}`, headers: []string{"x-a", "abc"}, want: true},
		{name: "contains miss", matcher: `{name: x-a, contains_match: "z"}`, headers: []string{"x-a", "abc"}, want: false},
		{name: "regex", matcher: `{name: x-a, safe_regex_match: {regex: "[0-9]+"}}`, headers: []string{"x-a", "123"}, want: true},
		{name: "regex full match", matcher: `{name: x-a, safe_regex_match: {regex: "[0-9]+"}}`, headers: []string{"x-a", "123a"}, want: false},
		{name: "range in", matcher: `{name: x-a, range_match: {start: 10, end: 20}}`, headers: []string{"x-a", "10"}, want: true},
		{name: "range end is open", matcher: `{name: x-a, range_match: {start: 10, end: 20}}`, headers: []string{"x-a", "20"}, want: false},
		{name: "range negative", matcher: `{name: x-a, range_match: {start: -5, end: 0}}`, headers: []string{"x-a", "-3"}, want: true},
		{name: "range not a number", matcher: `{name: x-a, range_match: {start: 0, end: 20}}`, headers: []string{"x-a", "1x"}, want: false},
		{name: "range inverted", matcher: `{name: x-a, range_match: {start: 0, end: 5}, invert_match: true}`, headers: []string{"x-a", "7"}, want: true},
		{name: "present", matcher: `{name: x-a, present_match: true}`, headers: []string{"x-a", ""}, want: true},
		{name: "present missing", matcher: `{name: x-a, present_match: true}`, want: false},
		{name: "present false missing", matcher: `{name: x-a, present_match: false}`, want: true},
		{name: "present false present", matcher: `{name: x-a, present_match: false}`, headers: []string{"x-a", "v"}, want: false},
		{name: "present inverted missing", matcher: `{name: x-a, present_match: true, invert_match: true}`, want: true},
		{name: "present inverted present", matcher: `{name: x-a, present_match: true, invert_match: true}`, headers: []string{"x-a", "v"}, want: false},
		{name: "no specifier means present", matcher: `{name: x-a}`, headers: []string{"x-a", "v"}, want: true},
		{name: "no specifier missing", matcher: `{name: x-a}`, want: false},
		{name: "string exact", matcher: `{name: x-a, string_match: {exact: "Val"}}`, headers: []string{"x-a", "Val"}, want: true},
		{name: "string exact ignore_case", matcher: `{name: x-a, string_match: {exact: "Val", ignore_case: true}}`, headers: []string{"x-a", "vAL"}, want: true},
		{name: "string prefix ignore_case", matcher: `{name: x-a, string_match: {prefix: "AB", ignore_case: true}}`, headers: []string{"x-a", "abc"}, want: true},
		{name: "string suffix ignore_case", matcher: `{name: x-a, string_match: {suffix: "BC", ignore_case: true}}`, headers: []string{"x-a", "abc"}, want: true},
		{name: "string contains ignore_case", matcher: `{name: x-a, string_match: {contains: "B", ignore_case: true}}`, headers: []string{"x-a", "abc"}, want: true},
		{name: "string contains case", matcher: `{name: x-a, string_match: {contains: "B"}}`, headers: []string{"x-a", "abc"}, want: false},
		{name: "string regex", matcher: `{name: x-a, string_match: {safe_regex: {regex: "a.c"}}}`, headers: []string{"x-a", "abc"}, want: true},
		{name: "string inverted", matcher: `{name: x-a, string_match: {exact: "v"}, invert_match: true}`, headers: []string{"x-a", "v"}, want: false},
		{name: "missing as empty", matcher: `{name: x-a, string_match: {exact: ""}, treat_missing_header_as_empty: true}`, want: true},
		{name: "missing as empty inverted", matcher: `{name: x-a, prefix_match: "a", invert_match: true, treat_missing_header_as_empty: true}`, want: true},
		{name: "pseudo-header", matcher: `{name: ":method", exact_match: "GET"}`, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tbl := oneRoute(t, `{prefix: "/", headers: [`+tc.matcher+`]}`)
			r, _ := tbl.Match(req("h", "/", tc.headers...))
			if got := r != nil; got != tc.want {
				t.Errorf("%s with headers %q: matched = %v, want %v", tc.matcher, tc.headers, got, tc.want)
			}
		})
	}
}

func TestQueryParameterMatch(t *testing.T) {
	tests := []struct {
		name    string
		matcher string
		path    string
		want    bool
	}{
		{name: "exact", matcher: `{name: a, string_match: {exact: "1"}}`, path: "/?a=1", want: true},
		{name: "exact among others", matcher: `{name: a, string_match: {exact: "1"}}`, path: "/?b=2&a=1&c", want: true},
		{name: "only the first value counts", matcher: `{name: a, string_match: {exact: "2"}}`, path: "/?a=1&a=2", want: false},
		{name: "exact miss", matcher: `{name: a, string_match: {exact: "1"}}`, path: "/?a=2", want: false},
		{name: "missing", matcher: `{name: a, string_match: {exact: "1"}}`, path: "/x", want: false},
		{name: "values are not decoded", matcher: `{name: a, string_match: {exact: "a b"}}`, path: "/?a=a%20b", want: false},
		{name: "prefix", matcher: `{name: a, string_match: {prefix: "ab"}}`, path: "/?a=abc", want: true},
		{name: "regex", matcher: `{name: a, string_match: {safe_regex: {regex: "[0-9]+"}}}`, path: "/?a=42", want: true},
		{name: "present", matcher: `{name: a, present_match: true}`, path: "/?a", want: true},
		{name: "present missing", matcher: `{name: a, present_match: true}`, path: "/?ab=1", want: false},
		{name: "present false", matcher: `{name: a, present_match: false}`, path: "/?b=1", want: true},
		{name: "present false but present", matcher: `{name: a, present_match: false}`, path: "/?a=1", want: false},
		{name: "no specifier means present", matcher: `{name: a}`, path: "/?a=", want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tbl := oneRoute(t, `{prefix: "/", query_parameters: [`+tc.matcher+`]}`)
			r, _ := tbl.Match(req("h", tc.path))
			if got := r != nil; got != tc.want {
				t.Errorf("%s against %q: matched = %v, want %v", tc.matcher, tc.path, got, tc.want)
			}
		})
	}
}

func TestGRPCMatch(t *testing.T) {
	tests := []struct {
		name        string
		contentType string
		want        bool
	}{
		{name: "grpc", contentType: "application/grpc", want: true},
		{name: "grpc+proto", contentType: "application/grpc+proto", want: true},
		{name: "grpc-web is not grpc", contentType: "application/grpc-web", want: false},
		{name: "json", contentType: "application/json", want: false},
		{name: "missing", want: false},
	}
	tbl := oneRoute(t, `{prefix: "/", grpc: {}}`)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var extra []string
			if tc.contentType != "" {
				extra = []string{"content-type", tc.contentType}
			}
			r, _ := tbl.Match(req("h", "/svc/M", extra...))
			if got := r != nil; got != tc.want {
				t.Errorf("content-type %q: matched = %v, want %v", tc.contentType, got, tc.want)
			}
		})
	}
}

func TestFirstMatchWins(t *testing.T) {
	tbl := mustBuild(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {name: admin, match: {prefix: "/admin", headers: [{name: x-admin, present_match: true}]}, route: {cluster: c}}
  - {name: login, match: {path: "/login"}, route: {cluster: c}}
  - {name: api, match: {prefix: "/api"}, route: {cluster: c}}
  - {name: api-v2, match: {prefix: "/api/v2"}, route: {cluster: c}}
  - {name: all, match: {prefix: "/"}, route: {cluster: c}}`)
	tests := []struct {
		name    string
		path    string
		headers []string
		want    string
	}{
		{name: "earlier prefix shadows a longer one", path: "/api/v2/x", want: "api"},
		{name: "headers must match too", path: "/admin", want: "all"},
		{name: "headers match", path: "/admin", headers: []string{"x-admin", "1"}, want: "admin"},
		{name: "exact path", path: "/login", want: "login"},
		{name: "catch-all", path: "/other", want: "all"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := matchName(tbl, req("h", tc.path, tc.headers...))
			if got != tc.want {
				t.Errorf("route for %q = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
	if r, vh := tbl.Match(req("h", "")); r != nil || vh == nil {
		t.Errorf("request without :path: route %v, virtual host %v; want no route in a virtual host", r, vh)
	}
}
