package meta_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"

	_ "github.com/herald-proxy/herald/extensions/all"
	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/server"
	"github.com/herald-proxy/herald/internal/testutil"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
	"github.com/herald-proxy/herald/test/meta"
)

// repo is the real source tree.
func repo() fs.FS { return os.DirFS(testutil.RepoRoot()) }

// fixture is a deliberately broken tree under testdata/.
func fixture(name string) fs.FS { return os.DirFS(filepath.Join("testdata", name)) }

// registered is what the linked-in extensions (extensions/all) registered,
// by extension kind (the folder under extensions/).
func registered() meta.Registered {
	clusters := []string{}
	for _, n := range clustertype.Names() {
		if e, ok := clustertype.ByName(n); ok && e.Config != nil {
			clusters = append(clusters, registry.TypeURL(e.Config))
		}
	}
	return meta.Registered{
		"filters/http":            append(httpfilter.Registry.TypeURLs(), httpfilter.PerRouteRegistry.TypeURLs()...),
		"filters/network":         netfilter.Registry.TypeURLs(),
		"access_loggers":          accesslog.Registry.TypeURLs(),
		"clusters":                clusters,
		"load_balancing_policies": lbpolicy.Registry.TypeURLs(),
		"filters/listener":        listenerfilter.Registry.TypeURLs(),
		"transport_sockets":       append(transportsocket.DownstreamRegistry.TypeURLs(), transportsocket.UpstreamRegistry.TypeURLs()...),
	}
}

// validate runs herald's validate mode in process: what
// `herald --mode validate --config-yaml "$yaml"` does after flag parsing.
func validate(yaml string) error {
	var stdout, stderr bytes.Buffer
	code := server.Run(server.Options{Mode: "validate", ConfigYAML: yaml, LogLevel: "error"}, &stdout, &stderr)
	if code != 0 {
		return errors.New(stderr.String())
	}
	if !strings.Contains(stdout.String(), "OK") {
		return fmt.Errorf("exit code 0 but no OK line: stdout %q, stderr %q", stdout.String(), stderr.String())
	}
	return nil
}

// reportProblems fails t with one line per problem.
func reportProblems(t *testing.T, probs []meta.Problem, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range probs {
		t.Error(p.String())
	}
}

func TestExtensionsAllLinksEveryExtension(t *testing.T) {
	probs, err := meta.CheckAllImports(repo())
	reportProblems(t, probs, err)
}

func TestNetHTTPOnlyWhereAllowed(t *testing.T) {
	probs, err := meta.CheckNetHTTP(repo(), meta.NetHTTPAllowed)
	reportProblems(t, probs, err)
}

func TestReadmesListRegisteredTypeURLs(t *testing.T) {
	probs, err := meta.CheckReadmes(repo(), registered())
	reportProblems(t, probs, err)
}

func TestReadmeTypeURLsBelongToTheirFolder(t *testing.T) {
	probs, err := meta.CheckReadmeOwnership(repo(), goPackageOf)
	reportProblems(t, probs, err)
}

// goPackageOf finds a type URL's message among the linked-in protos and
// returns the Go import path of its generated package (the go_package
// option, without its ";name" suffix).
func goPackageOf(url string) (string, bool) {
	mt, err := protoregistry.GlobalTypes.FindMessageByURL(url)
	if err != nil {
		return "", false
	}
	opts, ok := mt.Descriptor().ParentFile().Options().(*descriptorpb.FileOptions)
	if !ok || opts.GetGoPackage() == "" {
		return "", false
	}
	pkg, _, _ := strings.Cut(opts.GetGoPackage(), ";")
	return pkg, true
}

func TestReadmeExamplesValidate(t *testing.T) {
	probs, err := meta.CheckExamples(repo(), validate)
	reportProblems(t, probs, err)
}

// TestTreeHasExtensions guards the checks above against passing vacuously
// (a wrong root would find no extension at all).
func TestTreeHasExtensions(t *testing.T) {
	dirs, err := meta.ExtensionDirs(repo())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"extensions/filters/http/router",
		"extensions/filters/network/http_connection_manager",
		"extensions/filters/network/tcp_proxy",
	} {
		if !contains(dirs, want) {
			t.Errorf("ExtensionDirs = %v, want it to include %s", dirs, want)
		}
	}
	if contains(dirs, meta.AllDir) {
		t.Errorf("ExtensionDirs = %v, want %s left out", dirs, meta.AllDir)
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// wantProblem matches a Problem: Path and Line exactly, Msg by substring.
type wantProblem struct {
	path string
	line int
	msg  string
}

// TestChecksFailOnBrokenFixtures proves each check can fail: every fixture
// holds broken parts, which must be reported exactly, and well-formed parts,
// which must not be.
func TestChecksFailOnBrokenFixtures(t *testing.T) {
	fixtureRegistry := meta.Registered{
		"filters/http": {
			"type.googleapis.com/fixture.Good",
			"type.googleapis.com/fixture.GoodPerRoute",
			"type.googleapis.com/fixture.Unlisted",
		},
		"clusters": {},
	}
	tests := []struct {
		name  string
		check func(fs.FS) ([]meta.Problem, error)
		tree  string
		want  []wantProblem
	}{
		{
			name:  "extensions-all imports",
			check: meta.CheckAllImports,
			tree:  "allimports",
			want: []wantProblem{
				{path: "extensions/all/all.go", line: 7, msg: `imports "example.com/fixture/extensions/filters/http/named" without _`},
				{path: "extensions/all/all.go", line: 8, msg: `imports "example.com/fixture/extensions/filters/http/testsonly", which is not an extension folder`},
				{path: "extensions/all/all.go", line: 9, msg: `imports "example.com/fixture/internal/thing", which is not an extension folder`},
				{path: "extensions/clusters/unlinked", msg: `extension is not linked: add _ "example.com/fixture/extensions/clusters/unlinked" to extensions/all`},
			},
		},
		{
			name:  "net-http imports",
			check: func(f fs.FS) ([]meta.Problem, error) { return meta.CheckNetHTTP(f, meta.NetHTTPAllowed) },
			tree:  "nethttp",
			want: []wantProblem{
				{path: "internal/listener/sub.go", line: 5, msg: `imports "net/http/httputil"`},
				{path: "internal/router/router.go", line: 5, msg: `imports "net/http"; only internal/http/codec/, internal/admin/, internal/testutil/, examples/, bench/cmd/ may`},
			},
		},
		{
			name:  "README type URLs",
			check: func(f fs.FS) ([]meta.Problem, error) { return meta.CheckReadmes(f, fixtureRegistry) },
			tree:  "readmes",
			want: []wantProblem{
				{path: "extensions/clusters/undocumented", msg: "no README.md"},
				{path: "extensions/filters/http/repeat/README.md", line: 5, msg: "Type URLs lists type.googleapis.com/fixture.Good, which extensions/filters/http/good/README.md lists too"},
				{path: "extensions/filters/http/unregistered/README.md", line: 5, msg: "Type URLs lists type.googleapis.com/fixture.Typo, which no filters/http extension registers"},
				{path: "extensions/tracers/unknown", msg: `no registry is known for extension kind "tracers"`},
				{path: "extensions/filters/http", msg: "type.googleapis.com/fixture.Unlisted is registered but no README's Type URLs section lists it"},
			},
		},
		{
			name: "README type URL ownership",
			check: func(f fs.FS) ([]meta.Problem, error) {
				return meta.CheckReadmeOwnership(f, func(url string) (string, bool) {
					pkg, ok := map[string]string{
						"type.googleapis.com/fixture.Good":         "example.com/proto/good",
						"type.googleapis.com/fixture.GoodPerRoute": "example.com/proto/good",
						"type.googleapis.com/fixture.Other":        "example.com/proto/other",
					}[url]
					return pkg, ok
				})
			},
			tree: "ownership",
			want: []wantProblem{
				{path: "extensions/filters/http/copied/README.md", line: 5, msg: "Type URLs lists type.googleapis.com/fixture.Good, but extensions/filters/http/copied does not import its package example.com/proto/good"},
				{path: "extensions/filters/http/unknown/README.md", line: 5, msg: "Type URLs lists type.googleapis.com/fixture.Nope, which names no known proto message"},
			},
		},
		{
			name:  "README examples",
			check: func(f fs.FS) ([]meta.Problem, error) { return meta.CheckExamples(f, validate) },
			tree:  "examples",
			want: []wantProblem{
				{path: "extensions/filters/network/fragment/README.md", line: 5, msg: "yaml example is not a bootstrap herald accepts"},
				{path: "extensions/filters/network/missing_cluster/README.md", line: 5, msg: "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.cluster"},
				{path: "extensions/filters/network/no_example/README.md", msg: "no ```yaml example bootstrap"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.check(fixture(tc.tree))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tc.want), problemList(got))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Path != w.path || g.Line != w.line || !strings.Contains(g.Msg, w.msg) {
					t.Errorf("problem %d = %s\nwant %s:%d: ...%s...", i, g, w.path, w.line, w.msg)
				}
			}
		})
	}
}

func problemList(probs []meta.Problem) string {
	var b strings.Builder
	for _, p := range probs {
		b.WriteString("\t" + p.String() + "\n")
	}
	return b.String()
}

func TestParseReadme(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want meta.Readme
	}{
		{
			name: "type URLs section ends at the next heading of its level",
			in: "# envoy.x\n\n## Type URLs\n\n- `type.googleapis.com/a.B`\n### per route\n- type.googleapis.com/a.C\n" +
				"## Stats\n- type.googleapis.com/not.Listed\n",
			want: meta.Readme{
				HasTypeURLsSection: true,
				TypeURLs:           []meta.Listed{{URL: "type.googleapis.com/a.B", Line: 5}, {URL: "type.googleapis.com/a.C", Line: 7}},
			},
		},
		{
			// A YAML comment inside a fence is not a Markdown heading, so the
			// section goes on past it.
			name: "comment in a fence is not a heading",
			in:   "## Type URLs\n```yaml\n# Stats\n```\n- type.googleapis.com/a.B\n",
			want: meta.Readme{
				HasTypeURLsSection: true,
				TypeURLs:           []meta.Listed{{URL: "type.googleapis.com/a.B", Line: 5}},
				YAML:               []meta.Block{{Line: 2, Text: "# Stats\n"}},
			},
		},
		{
			name: "yaml and yml blocks only; longer fences and tildes",
			in:   "```go\nx\n```\n````yml\na: 1\n```\nb: 2\n````\n~~~ yaml title\nc: 3\n~~~\n```\nd\n```\n",
			want: meta.Readme{
				YAML: []meta.Block{{Line: 4, Text: "a: 1\n```\nb: 2\n"}, {Line: 9, Text: "c: 3\n"}},
			},
		},
		{
			name: "singular heading, case-insensitive",
			in:   "### type URL\ntype.googleapis.com/x.Y (name)\n",
			want: meta.Readme{
				HasTypeURLsSection: true,
				TypeURLs:           []meta.Listed{{URL: "type.googleapis.com/x.Y", Line: 2}},
			},
		},
		{
			name: "URLs outside the section are not listed",
			in:   "Uses `type.googleapis.com/x.Y`.\n",
			want: meta.Readme{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := meta.ParseReadme([]byte(tc.in))
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ParseReadme mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
