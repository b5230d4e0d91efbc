package bootstrap

import (
	"strings"
	"testing"

	"github.com/herald-proxy/herald/internal/configerr"
)

func TestSplitPath(t *testing.T) {
	tests := []struct {
		name string
		path string
		want []string
	}{
		{name: "fields and lists", path: "static_resources.clusters[0].name", want: []string{"static_resources", "clusters[0]", "name"}},
		{name: "map key with dots", path: "routes[0].typed_per_filter_config[envoy.filters.http.buffer].max_request_bytes", want: []string{"routes[0]", "typed_per_filter_config[envoy.filters.http.buffer]", "max_request_bytes"}},
		{name: "single field", path: "admin", want: []string{"admin"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := splitPath(tc.path); strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Errorf("splitPath(%s) = %q, want %q", tc.path, got, tc.want)
			}
		})
	}
}

// TestMergedIndex checks the re-basing of --config-yaml paths after Envoy's
// MergeFrom appended its list elements to the file's.
func TestMergedIndex(t *testing.T) {
	pos := func(file string, line int) configerr.Pos { return configerr.Pos{File: file, Line: line, Col: 1} }
	base := newIndex("envoy.yaml")
	base.pos["static_resources.clusters"] = pos("envoy.yaml", 2)
	base.pos["static_resources.clusters[0]"] = pos("envoy.yaml", 3)
	base.pos["static_resources.clusters[1]"] = pos("envoy.yaml", 4)
	base.pos["admin.address"] = pos("envoy.yaml", 9)
	base.lists["static_resources.clusters"] = 2
	over := newIndex(ConfigYAMLFile)
	over.pos["static_resources.clusters[0]"] = pos(ConfigYAMLFile, 1)
	over.pos["static_resources.clusters[0].health_checks[0]"] = pos(ConfigYAMLFile, 2)
	over.pos["static_resources.listeners[0]"] = pos(ConfigYAMLFile, 3)
	over.pos["admin.address"] = pos(ConfigYAMLFile, 4)
	over.lists["static_resources.clusters"] = 1
	over.lists["static_resources.clusters[0].health_checks"] = 1
	over.lists["static_resources.listeners"] = 1

	m := merged(base, over)
	tests := []struct {
		path string
		want configerr.Pos
	}{
		{path: "static_resources.clusters[0]", want: pos("envoy.yaml", 3)},
		{path: "static_resources.clusters[2]", want: pos(ConfigYAMLFile, 1)},
		// Only the first list index is shifted: the inner list is the
		// appended element's own.
		{path: "static_resources.clusters[2].health_checks[0]", want: pos(ConfigYAMLFile, 2)},
		// The file had no listeners: nothing to shift.
		{path: "static_resources.listeners[0]", want: pos(ConfigYAMLFile, 3)},
		// A singular field of --config-yaml overrides the file's.
		{path: "admin.address", want: pos(ConfigYAMLFile, 4)},
	}
	for _, tc := range tests {
		if got, ok := m.Locate(tc.path); !ok || got != tc.want {
			t.Errorf("Locate(%s) = %v, %v; want %v", tc.path, got, ok, tc.want)
		}
	}
	if got, want := m.lists["static_resources.clusters"], 3; got != want {
		t.Errorf("merged clusters length = %d, want %d", got, want)
	}
	if got, want := m.File(), "envoy.yaml"; got != want {
		t.Errorf("File() = %q, want %q", got, want)
	}
}

// TestIndexWithCollect shows the contract other packages rely on: a
// FieldError with a path and no position is located by configerr.Collect
// with the Index, falling back to the nearest known parent.
func TestIndexWithCollect(t *testing.T) {
	_, idx, err := Parse("envoy.yaml", []byte(y(
		"static_resources:",
		"  clusters:",
		"  - name: a",
		"    lb_policy: MAGLEV",
	)))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "known path", err: configerr.At("static_resources.clusters[0].lb_policy", "not supported by herald yet"), want: "envoy.yaml:4:16: static_resources.clusters[0].lb_policy: not supported by herald yet"},
		{name: "unset field falls back to its message", err: configerr.At("static_resources.clusters[0].ring_hash_lb_config", "required for RING_HASH"), want: "envoy.yaml:3:5: static_resources.clusters[0].ring_hash_lb_config: required for RING_HASH"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := configerr.Collect(tc.err, "", idx).Error(); got != tc.want {
				t.Errorf("Collect = %q, want %q", got, tc.want)
			}
		})
	}
}
