package admin

import (
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func cluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(time.Second)}
}

// testDump is a dump as internal/server would return it: bootstrap,
// clusters, listeners and secrets, secrets unredacted.
func testDump(t *testing.T) *adminv3.ConfigDump {
	updated := timestamppb.New(time.Unix(1700000000, 0))
	return &adminv3.ConfigDump{Configs: []*anypb.Any{
		mustAny(t, &adminv3.BootstrapConfigDump{Bootstrap: &bootstrapv3.Bootstrap{Node: &corev3.Node{Id: "node-1"}}}),
		mustAny(t, &adminv3.ClustersConfigDump{
			VersionInfo: "v1",
			StaticClusters: []*adminv3.ClustersConfigDump_StaticCluster{
				{Cluster: mustAny(t, cluster("alpha")), LastUpdated: updated},
				{Cluster: mustAny(t, cluster("beta")), LastUpdated: updated},
			},
			DynamicActiveClusters: []*adminv3.ClustersConfigDump_DynamicCluster{
				{VersionInfo: "3", Cluster: mustAny(t, cluster("gamma"))},
			},
		}),
		mustAny(t, &adminv3.ListenersConfigDump{
			DynamicListeners: []*adminv3.ListenersConfigDump_DynamicListener{
				{Name: "ingress", ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{
					Listener: mustAny(t, &listenerv3.Listener{Name: "ingress"})}},
			},
		}),
		mustAny(t, &adminv3.SecretsConfigDump{
			StaticSecrets: []*adminv3.SecretsConfigDump_StaticSecret{{
				Name: "server-cert",
				Secret: mustAny(t, &tlsv3.Secret{Name: "server-cert", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
					CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "PUBLIC-CHAIN"}},
					PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "TOP-SECRET-KEY"}},
				}}}),
			}},
		}),
	}}
}

// unpackAll returns the messages inside a /config_dump answer.
func unpackAll(t *testing.T, body string) []proto.Message {
	t.Helper()
	var dump adminv3.ConfigDump
	if err := protojson.Unmarshal([]byte(body), &dump); err != nil {
		t.Fatalf("unmarshal %s: %v", body, err)
	}
	var out []proto.Message
	for _, c := range dump.GetConfigs() {
		m, err := c.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func staticClusterNames(t *testing.T, msgs []proto.Message) []string {
	t.Helper()
	var names []string
	for _, m := range msgs {
		var cs []*adminv3.ClustersConfigDump_StaticCluster
		switch m := m.(type) {
		case *adminv3.ClustersConfigDump:
			cs = m.GetStaticClusters()
		case *adminv3.ClustersConfigDump_StaticCluster:
			cs = []*adminv3.ClustersConfigDump_StaticCluster{m}
		default:
			continue
		}
		for _, c := range cs {
			var cl clusterv3.Cluster
			if err := c.GetCluster().UnmarshalTo(&cl); err != nil {
				t.Fatal(err)
			}
			names = append(names, cl.GetName())
		}
	}
	return names
}

func TestConfigDump(t *testing.T) {
	tests := []struct {
		name       string
		target     string
		wantStatus int
		wantType   string
		wantBody   string // exact, for errors
		check      func(t *testing.T, f *fakeSource, body string)
	}{
		{
			name: "whole dump, secrets redacted", target: "/config_dump",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, f *fakeSource, body string) {
				msgs := unpackAll(t, body)
				if len(msgs) != 4 {
					t.Fatalf("got %d configs, want 4", len(msgs))
				}
				if d := cmp.Diff([]string{"alpha", "beta"}, staticClusterNames(t, msgs)); d != "" {
					t.Errorf("static clusters (-want +got):\n%s", d)
				}
				// TlsCertificate.private_key is (udpa.annotations.sensitive).
				if strings.Contains(body, "TOP-SECRET-KEY") {
					t.Error("private key not redacted")
				}
				var secret tlsv3.Secret
				if err := msgs[3].(*adminv3.SecretsConfigDump).GetStaticSecrets()[0].GetSecret().UnmarshalTo(&secret); err != nil {
					t.Fatal(err)
				}
				if got := secret.GetTlsCertificate().GetPrivateKey().GetInlineString(); got != "[redacted]" {
					t.Errorf("private key = %q, want [redacted]", got)
				}
				if got := secret.GetTlsCertificate().GetCertificateChain().GetInlineString(); got != "PUBLIC-CHAIN" {
					t.Errorf("certificate chain = %q, want it untouched", got)
				}
				if f.includeEDS {
					t.Error("include_eds passed without ?include_eds")
				}
			},
		},
		{
			name: "include_eds reaches the source", target: "/config_dump?include_eds",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, f *fakeSource, _ string) {
				if !f.includeEDS {
					t.Error("ConfigDump(includeEDS) = false, want true")
				}
			},
		},
		{
			name: "resource lists elements", target: "/config_dump?resource=static_clusters",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, _ *fakeSource, body string) {
				if !strings.Contains(body, "type.googleapis.com/envoy.admin.v3.ClustersConfigDump.StaticCluster") {
					t.Errorf("elements not packed as StaticCluster: %s", body)
				}
				if d := cmp.Diff([]string{"alpha", "beta"}, staticClusterNames(t, unpackAll(t, body))); d != "" {
					t.Errorf("clusters (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "resource with name_regex", target: "/config_dump?resource=static_clusters&name_regex=al.*",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, _ *fakeSource, body string) {
				if d := cmp.Diff([]string{"alpha"}, staticClusterNames(t, unpackAll(t, body))); d != "" {
					t.Errorf("clusters (-want +got):\n%s", d)
				}
			},
		},
		{
			// Envoy's regex matchers match the whole name: "al" alone matches nothing.
			name: "name_regex matches whole names", target: "/config_dump?name_regex=al",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, _ *fakeSource, body string) {
				msgs := unpackAll(t, body)
				if got := staticClusterNames(t, msgs); len(got) != 0 {
					t.Errorf("static clusters = %v, want none", got)
				}
				if got := msgs[2].(*adminv3.ListenersConfigDump).GetDynamicListeners(); len(got) != 0 {
					t.Errorf("dynamic listeners = %v, want none", got)
				}
			},
		},
		{
			name: "name_regex keeps matching listener", target: "/config_dump?name_regex=ingress|beta",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, _ *fakeSource, body string) {
				msgs := unpackAll(t, body)
				if d := cmp.Diff([]string{"beta"}, staticClusterNames(t, msgs)); d != "" {
					t.Errorf("clusters (-want +got):\n%s", d)
				}
				if got := msgs[2].(*adminv3.ListenersConfigDump).GetDynamicListeners(); len(got) != 1 || got[0].GetName() != "ingress" {
					t.Errorf("dynamic listeners = %v, want ingress", got)
				}
			},
		},
		{
			name: "bad name_regex", target: "/config_dump?name_regex=(",
			wantStatus: 400, wantType: contentTypeText,
			check: func(t *testing.T, _ *fakeSource, body string) {
				if !strings.HasPrefix(body, "INVALID_ARGUMENT: Error while parsing name_regex from (: ") {
					t.Errorf("body = %q", body)
				}
			},
		},
		{
			name: "unknown resource", target: "/config_dump?resource=nope",
			wantStatus: 404, wantType: contentTypeText, wantBody: "nope not found in config dump",
		},
		{
			name: "resource that is not repeated", target: "/config_dump?resource=version_info",
			wantStatus: 400, wantType: contentTypeText,
			wantBody: "version_info is not a repeated field. Use ?mask=version_info to get only this field",
		},
		{
			// The mask reaches inside the Any: only the cluster name is left.
			name: "resource with mask into the Any", target: "/config_dump?resource=static_clusters&mask=cluster.name",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, _ *fakeSource, body string) {
				msgs := unpackAll(t, body)
				if len(msgs) != 2 {
					t.Fatalf("got %d elements, want 2", len(msgs))
				}
				sc := msgs[0].(*adminv3.ClustersConfigDump_StaticCluster)
				if sc.GetLastUpdated() != nil {
					t.Error("last_updated kept, want trimmed")
				}
				var cl clusterv3.Cluster
				if err := sc.GetCluster().UnmarshalTo(&cl); err != nil {
					t.Fatal(err)
				}
				if d := cmp.Diff(&clusterv3.Cluster{Name: "alpha"}, &cl, protocmp.Transform()); d != "" {
					t.Errorf("cluster (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "resource with bad mask", target: "/config_dump?resource=static_clusters&mask=bogus",
			wantStatus: 400, wantType: contentTypeText,
			wantBody: "FieldMask paths: \"bogus\"\n could not be successfully used.",
		},
		{
			// Configs the mask does not fit (bootstrap, listeners, secrets) are left out.
			name: "mask on whole dump", target: "/config_dump?mask=static_clusters",
			wantStatus: 200, wantType: contentTypeJSON,
			check: func(t *testing.T, _ *fakeSource, body string) {
				msgs := unpackAll(t, body)
				if len(msgs) != 1 {
					t.Fatalf("got %d configs, want 1", len(msgs))
				}
				cd := msgs[0].(*adminv3.ClustersConfigDump)
				if cd.GetVersionInfo() != "" || len(cd.GetDynamicActiveClusters()) != 0 {
					t.Errorf("mask kept other fields: %v", cd)
				}
				if d := cmp.Diff([]string{"alpha", "beta"}, staticClusterNames(t, msgs)); d != "" {
					t.Errorf("clusters (-want +got):\n%s", d)
				}
			},
		},
		{
			name: "mask that fits nothing", target: "/config_dump?mask=nope",
			wantStatus: 400, wantType: contentTypeText,
			wantBody: "FieldMask nope could not be successfully applied to any configs.",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSource()
			f.dump = testDump(t)
			a := New(f, quiet)
			w := do(t, a, "GET", tc.target)
			body := w.Body.String()
			if w.Code != tc.wantStatus {
				t.Errorf("status = %d, want %d (body %q)", w.Code, tc.wantStatus, body)
			}
			if got := w.Header().Get("Content-Type"); got != tc.wantType {
				t.Errorf("content-type = %q, want %q", got, tc.wantType)
			}
			if tc.wantBody != "" && body != tc.wantBody {
				t.Errorf("body = %q, want %q", body, tc.wantBody)
			}
			if tc.check != nil {
				tc.check(t, f, body)
			}
			// The source's dump is never modified (redaction works on a copy).
			var sd adminv3.SecretsConfigDump
			if err := f.dump.GetConfigs()[3].UnmarshalTo(&sd); err != nil {
				t.Fatal(err)
			}
			var secret tlsv3.Secret
			if err := sd.GetStaticSecrets()[0].GetSecret().UnmarshalTo(&secret); err != nil {
				t.Fatal(err)
			}
			if got := secret.GetTlsCertificate().GetPrivateKey().GetInlineString(); got != "TOP-SECRET-KEY" {
				t.Errorf("source dump modified: private key = %q", got)
			}
		})
	}
}

func TestBuildMaskTree(t *testing.T) {
	tests := []struct {
		name  string
		paths []string
		want  maskTree
	}{
		{name: "single", paths: []string{"a"}, want: maskTree{"a": nil}},
		{name: "nested", paths: []string{"a.b", "a.c"}, want: maskTree{"a": {"b": nil, "c": nil}}},
		{name: "whole wins after", paths: []string{"a.b", "a"}, want: maskTree{"a": nil}},
		{name: "whole wins before", paths: []string{"a", "a.b"}, want: maskTree{"a": nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, buildMaskTree(tc.paths)); d != "" {
				t.Errorf("tree (-want +got):\n%s", d)
			}
		})
	}
}
