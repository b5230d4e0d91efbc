package xds

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"

	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
)

// clustersYAML is a DiscoveryResponse file with one cluster per name.
func clustersYAML(version string, timeout string, names ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version_info: %q\nresources:\n", version)
	for _, n := range names {
		fmt.Fprintf(&b, "- \"@type\": type.googleapis.com/envoy.config.cluster.v3.Cluster\n  name: %s\n  connect_timeout: %s\n  type: STATIC\n", n, timeout)
	}
	return b.String()
}

// writeAtomic writes data next to path and renames it into place, the
// update Envoy documents for file sources.
func writeAtomic(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func fileClient(t *testing.T, st *stats.Store) *Client {
	t.Helper()
	c, err := NewClient(nil, Options{Stats: st, Logger: slog.New(slog.DiscardHandler), FilePollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func waitUpdate(t *testing.T, rec *recorder, check func(Update) error) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, func() error {
		u, ok := rec.lastUpdate()
		if !ok {
			return fmt.Errorf("no update")
		}
		return check(u)
	})
}

func wantClusters(version string, names ...string) func(Update) error {
	return func(u Update) error {
		if u.VersionInfo != version {
			return fmt.Errorf("version = %q, want %q", u.VersionInfo, version)
		}
		if diff := cmp.Diff(names, resourceNames(u.Resources)); diff != "" {
			return fmt.Errorf("resources (-want +got):\n%s", diff)
		}
		return nil
	}
}

// TestFileSource: initial load, an atomic rename update, bad files
// rejected with the old resources kept, in both the legacy path and
// path_config_source forms and in JSON.
func TestFileSource(t *testing.T) {
	tests := []struct {
		name string
		file string
		src  func(path string) *corev3.ConfigSource
		// render turns the YAML text into the file's format.
		render func(string) string
	}{
		{
			name: "legacy path, YAML",
			file: "cds.yaml",
			src: func(p string) *corev3.ConfigSource {
				return &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: p}}
			},
			render: func(s string) string { return s },
		},
		{
			name: "path_config_source, JSON",
			file: "cds.json",
			src: func(p string) *corev3.ConfigSource {
				return &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{Path: p}}}
			},
			render: yamlToJSON,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tc.file)
			writeAtomic(t, path, tc.render(clustersYAML("v1", "1s", "a", "b")))
			st := stats.NewStore()
			rec := &recorder{}
			sub := subscribe(t, fileClient(t, st), tc.src(path), ClusterType, nil, rec, st.Scope("cluster_manager.cds."))
			waitReady(t, sub)
			waitUpdate(t, rec, wantClusters("v1", "a", "b"))

			writeAtomic(t, path, tc.render(clustersYAML("v2", "2s", "a", "c")))
			waitUpdate(t, rec, func(u Update) error {
				if err := wantClusters("v2", "a", "c")(u); err != nil {
					return err
				}
				if diff := cmp.Diff([]string{"b"}, u.Removed); diff != "" {
					return fmt.Errorf("removed (-want +got):\n%s", diff)
				}
				if got := u.Resources[0].Message.(*clusterv3.Cluster).GetConnectTimeout().AsDuration(); got != 2*time.Second {
					return fmt.Errorf("connect_timeout = %v, want 2s", got)
				}
				return nil
			})

			bad := []struct {
				name    string
				data    string
				wantErr string
			}{
				{name: "syntax", data: "version_info: [\n", wantErr: tc.file},
				{name: "invalid field", data: clustersYAML("v3", "-1s", "a"), wantErr: `cluster "a": connect_timeout`},
				{name: "unknown field", data: clustersYAML("v3", "1s", "a") + "  no_such_field: 1\n", wantErr: "no_such_field"},
			}
			for i, b := range bad {
				writeAtomic(t, path, tc.render(b.data))
				testutil.Eventually(t, 5*time.Second, func() error {
					if got := counter(st, "cluster_manager.cds.update_rejected"); got != uint64(i+1) {
						return fmt.Errorf("%s: update_rejected = %d, want %d", b.name, got, i+1)
					}
					return nil
				})
				stt := sub.Status()
				if stt.Failure == nil || !strings.Contains(stt.Failure.Details, b.wantErr) {
					t.Errorf("%s: failure = %+v, want details containing %q", b.name, stt.Failure, b.wantErr)
				}
				if stt.VersionInfo != "v2" || !cmp.Equal(resourceNames(stt.Resources), []string{"a", "c"}) {
					t.Errorf("%s: status = %s %v, want v2 [a c] kept", b.name, stt.VersionInfo, resourceNames(stt.Resources))
				}
			}
			if u, _ := rec.lastUpdate(); u.VersionInfo != "v2" {
				t.Errorf("Apply saw version %q after bad files, want v2 as the last", u.VersionInfo)
			}
			writeAtomic(t, path, tc.render(clustersYAML("v4", "1s", "d")))
			waitUpdate(t, rec, wantClusters("v4", "d"))
			if f := sub.Status().Failure; f != nil {
				t.Errorf("failure after a good file = %+v, want nil", f)
			}
		})
	}
}

// TestFileWatchedDirectory: a Kubernetes ConfigMap style update — the
// ..data symlink swapped by rename inside the watched directory.
func TestFileWatchedDirectory(t *testing.T) {
	dir := t.TempDir()
	mustDir := func(name, data string) {
		if err := os.MkdirAll(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name, "cds.yaml"), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mustDir("rev1", clustersYAML("v1", "1s", "a"))
	if err := os.Symlink("rev1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "cds.yaml"), filepath.Join(dir, "cds.yaml")); err != nil {
		t.Fatal(err)
	}
	src := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
		Path:             filepath.Join(dir, "cds.yaml"),
		WatchedDirectory: &corev3.WatchedDirectory{Path: dir},
	}}}
	st := stats.NewStore()
	rec := &recorder{}
	subscribe(t, fileClient(t, st), src, ClusterType, nil, rec, st.Scope("cds."))
	waitUpdate(t, rec, wantClusters("v1", "a"))

	mustDir("rev2", clustersYAML("v2", "1s", "a", "b"))
	if err := os.Symlink("rev2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	waitUpdate(t, rec, wantClusters("v2", "a", "b"))
}

// TestFileNamesAndPoll: names filter what a file delivers; poll_interval
// re-reads the file.
func TestFileNamesAndPoll(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "eds.yaml")
	cla := func(version string, names ...string) string {
		var b strings.Builder
		fmt.Fprintf(&b, "version_info: %q\nresources:\n", version)
		for _, n := range names {
			fmt.Fprintf(&b, "- \"@type\": type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment\n  cluster_name: %s\n", n)
		}
		return b.String()
	}
	writeAtomic(t, path, cla("v1", "a", "b"))
	src := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: &corev3.PathConfigSource{
		Path: path, PollInterval: durationpb.New(5 * time.Millisecond),
	}}}
	st := stats.NewStore()
	rec := &recorder{}
	sub := subscribe(t, fileClient(t, st), src, EndpointType, []string{"b"}, rec, st.Scope("cluster.b."))
	waitUpdate(t, rec, wantClusters("v1", "b"))
	sub.UpdateResourceNames([]string{"a", "b"})
	waitUpdate(t, rec, wantClusters("v1", "a", "b"))
	// An in-place write (no rename) is seen in poll_interval mode.
	if err := os.WriteFile(path, []byte(cla("v2", "a")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUpdate(t, rec, wantClusters("v2", "a"))
}

// TestFileSourceErrors: path_config_source config the client refuses.
func TestFileSourceErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.yaml")
	writeAtomic(t, path, clustersYAML("v1", "1s", "a"))
	tests := []struct {
		name    string
		pcs     *corev3.PathConfigSource
		wantErr string
	}{
		{name: "empty path", pcs: &corev3.PathConfigSource{}, wantErr: "path: must not be empty"},
		{name: "missing file", pcs: &corev3.PathConfigSource{Path: filepath.Join(dir, "nope.yaml")}, wantErr: "does not exist"},
		{name: "missing directory", pcs: &corev3.PathConfigSource{Path: path, WatchedDirectory: &corev3.WatchedDirectory{Path: filepath.Join(dir, "nope")}}, wantErr: "watched_directory.path"},
		{name: "directory and poll", pcs: &corev3.PathConfigSource{Path: path, WatchedDirectory: &corev3.WatchedDirectory{Path: dir}, PollInterval: durationpb.New(time.Second)}, wantErr: "poll_interval"},
	}
	c := fileClient(t, nil)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_PathConfigSource{PathConfigSource: tc.pcs}}
			_, err := c.Subscribe(src, ClusterType, nil, (&recorder{}).callbacks(), stats.NewStore().Scope(""))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Subscribe error = %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// yamlToJSON renders a YAML test file as JSON; text that is not YAML is
// returned as it is (it is not JSON either).
func yamlToJSON(s string) string {
	j, err := yaml.YAMLToJSON([]byte(s))
	if err != nil {
		return s
	}
	return string(j)
}
