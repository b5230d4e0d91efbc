package server

import (
	"fmt"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"github.com/google/go-cmp/cmp"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/xds"
)

func TestMergeResources(t *testing.T) {
	static := Resources{
		Listeners:    []*listenerv3.Listener{{Name: "s1"}},
		Clusters:     []*clusterv3.Cluster{{Name: "c1"}},
		ListenerPath: func(i int) string { return fmt.Sprintf("static_resources.listeners[%d]", i) },
		ClusterPath:  func(i int) string { return fmt.Sprintf("static_resources.clusters[%d]", i) },
	}
	lis := func(name string) *xds.Resource {
		return &xds.Resource{Name: name, Message: &listenerv3.Listener{Name: name}}
	}
	cl := func(name string) *xds.Resource {
		return &xds.Resource{Name: name, Message: &clusterv3.Cluster{Name: name}}
	}
	tests := []struct {
		name          string
		sets          xdsSets
		wantListeners []string
		wantClusters  []string
		wantPaths     []string // ListenerPath of each listener, then ClusterPath of each cluster
		wantSkipped   []string
	}{
		{
			name:          "static only",
			wantListeners: []string{"s1"},
			wantClusters:  []string{"c1"},
			wantPaths:     []string{"static_resources.listeners[0]", "static_resources.clusters[0]"},
		},
		{
			name:          "dynamic resources follow the static ones and are named by kind and name",
			sets:          xdsSets{listeners: []*xds.Resource{lis("d1")}, clusters: []*xds.Resource{cl("d2")}},
			wantListeners: []string{"s1", "d1"},
			wantClusters:  []string{"c1", "d2"},
			wantPaths:     []string{"static_resources.listeners[0]", `listener "d1"`, "static_resources.clusters[0]", `cluster "d2"`},
		},
		{
			// Envoy: a resource not added via the API blocks updates.
			name:          "a static name hides the dynamic resource",
			sets:          xdsSets{listeners: []*xds.Resource{lis("s1"), lis("d1")}, clusters: []*xds.Resource{cl("c1")}},
			wantListeners: []string{"s1", "d1"},
			wantClusters:  []string{"c1"},
			wantPaths:     []string{"static_resources.listeners[0]", `listener "d1"`, "static_resources.clusters[0]"},
			wantSkipped:   []string{"listener s1", "cluster c1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := mergeResources(static, tc.sets)
			var ls, cs, paths []string
			for i, l := range m.res.Listeners {
				ls = append(ls, l.GetName())
				paths = append(paths, m.res.listenerPath(i))
			}
			for i, c := range m.res.Clusters {
				cs = append(cs, c.GetName())
				paths = append(paths, m.res.clusterPath(i))
			}
			if diff := cmp.Diff(tc.wantListeners, ls); diff != "" {
				t.Errorf("listeners (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantClusters, cs); diff != "" {
				t.Errorf("clusters (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantPaths, paths); diff != "" {
				t.Errorf("paths (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantSkipped, m.skipped); diff != "" {
				t.Errorf("skipped (-want +got):\n%s", diff)
			}
			if len(m.listeners)+len(m.clusters)+len(m.skipped) != len(tc.sets.listeners)+len(tc.sets.clusters) {
				t.Errorf("dynamic resources kept %d + %d, skipped %d; want every one of %d accounted for",
					len(m.listeners), len(m.clusters), len(m.skipped), len(tc.sets.listeners)+len(tc.sets.clusters))
			}
		})
	}
}

// TestXDSUpdateValidates checks that an LDS update is validated whole
// against the running configuration: a bad listener is an error naming
// it (the NACK), and nothing is accepted; a good one is accepted.
func TestXDSUpdateValidates(t *testing.T) {
	s := newTestServer(t)
	s.cfg.Store(parseBootstrap(t, "static_resources: {}\n"))
	s.dyn = &dynamic{kick: make(chan struct{}, 1), appliedCh: make(chan struct{})}
	good := listenerResource(t, "good", "")
	bad := listenerResource(t, "bad", "normalize_path: true")

	err := s.xdsUpdate(xds.ListenerType, []*xds.Resource{good, bad})
	if err == nil || !strings.Contains(err.Error(), `listener "bad"`) || !strings.Contains(err.Error(), "normalize_path") {
		t.Fatalf("bad update: error = %v, want one naming listener \"bad\" and normalize_path", err)
	}
	if got := s.dyn.accepted().listeners; len(got) != 0 {
		t.Fatalf("after a rejected update, accepted listeners = %d, want 0", len(got))
	}
	if err := s.xdsUpdate(xds.ListenerType, []*xds.Resource{good}); err != nil {
		t.Fatalf("good update: %v", err)
	}
	if got := s.dyn.accepted().listeners; len(got) != 1 || got[0].Name != "good" {
		t.Fatalf("accepted listeners = %v, want [good]", got)
	}
	select {
	case <-s.dyn.kick:
	default:
		t.Error("an accepted update did not wake the applier")
	}
}

func parseBootstrap(t *testing.T, y string) *bootstrap.Config {
	t.Helper()
	cfg, err := bootstrap.Load(bootstrap.Options{YAML: y})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return cfg
}

// listenerResource is an LDS resource: directListener's listener, with an
// extra HCM field (indented by the caller's single line).
func listenerResource(t *testing.T, name, extraHCM string) *xds.Resource {
	t.Helper()
	y := directListener(name, "0", name)
	if extraHCM != "" {
		y = strings.Replace(y, "          stat_prefix: in\n", "          stat_prefix: in\n          "+extraHCM+"\n", 1)
	}
	cfg := parseBootstrap(t, "static_resources:\n  listeners:\n"+y)
	l := cfg.Bootstrap.GetStaticResources().GetListeners()[0]
	return &xds.Resource{Name: name, Message: l}
}
