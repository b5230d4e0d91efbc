package file

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/herald-proxy/herald/internal/accesslog"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// parseAccessLog reads one AccessLog entry written in YAML.
func parseAccessLog(t *testing.T, y string) *accesslogv3.AccessLog {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	al := &accesslogv3.AccessLog{}
	if err := protojson.Unmarshal(js, al); err != nil {
		t.Fatalf("protojson: %v\n%s", err, js)
	}
	if err := al.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return al
}

func info() *streaminfo.Info {
	start := time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	req := &hhttp.Headers{}
	req.Add(":method", "GET")
	req.Add(":path", "/x")
	return &streaminfo.Info{
		StartTime: start, EndTime: start.Add(12 * time.Millisecond), Protocol: "HTTP/1.1",
		RequestHeaders: req, ResponseCode: 404, UpstreamCluster: "backend", UpstreamHost: "127.0.0.1:8080",
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		config  string // typed_config body; PATH is replaced by a temp file
		want    string // the line logged for info()
		wantErr string
	}{
		{name: "no format is the default format", config: `path: PATH`,
			want: `[2024-01-02T03:04:05.006Z] "GET /x HTTP/1.1" 404 - 0 0 12 - "-" "-" "-" "-" "127.0.0.1:8080"` + "\n"},
		{name: "empty legacy format is the default format", config: "path: PATH\nformat: ''",
			want: `[2024-01-02T03:04:05.006Z] "GET /x HTTP/1.1" 404 - 0 0 12 - "-" "-" "-" "-" "127.0.0.1:8080"` + "\n"},
		{name: "legacy format", config: "path: PATH\nformat: \"%RESPONSE_CODE% %UPSTREAM_CLUSTER%\\n\"", want: "404 backend\n"},
		{name: "legacy json_format renders strings", config: "path: PATH\njson_format: {code: '%RESPONSE_CODE%', rf: '%ROUTE_NAME%'}",
			want: `{"code":"404","rf":"-"}` + "\n"},
		{name: "legacy typed_json_format", config: "path: PATH\ntyped_json_format: {code: '%RESPONSE_CODE%', rf: '%ROUTE_NAME%'}",
			want: `{"code":404,"rf":null}` + "\n"},
		{name: "log_format text_format_source", config: "path: PATH\nlog_format: {text_format_source: {inline_string: \"%REQ(:METHOD)% %ROUTE_NAME%\\n\"}}",
			want: "GET -\n"},
		{name: "log_format omit_empty_values", config: "path: PATH\nlog_format: {text_format: \"[%ROUTE_NAME%]\\n\", omit_empty_values: true}",
			want: "[]\n"},
		{name: "log_format json_format", config: "path: PATH\nlog_format: {json_format: {code: '%RESPONSE_CODE%', rf: '%ROUTE_NAME%'}, omit_empty_values: true}",
			want: `{"code":404}` + "\n"},
		{name: "empty path", config: `path: ""`, wantErr: "typed_config.path: value length must be at least 1 runes"},
		{name: "unknown operator", config: "path: PATH\nlog_format: {text_format_source: {inline_string: '%NOPE%'}}",
			wantErr: "typed_config.log_format.text_format_source.inline_string: accesslog: %NOPE% at position 0: command operator not supported by herald yet"},
		{name: "unknown operator in legacy json", config: "path: PATH\njson_format: {a: {b: '%NOPE%'}}",
			wantErr: "typed_config.json_format.a.b:"},
		{name: "formatter extensions", config: "path: PATH\nlog_format: {text_format: x, formatters: [{name: envoy.formatter.req_without_query, typed_config: {'@type': type.googleapis.com/google.protobuf.Empty}}]}",
			wantErr: "typed_config.log_format.formatters: formatter extensions are not supported by herald yet"},
		{name: "unwritable path", config: "path: DIR/missing/access.log", wantErr: "typed_config.path: accesslog: open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "access.log")
			body := strings.ReplaceAll(strings.ReplaceAll(tc.config, "PATH", path), "DIR", dir)
			y := "name: envoy.access_loggers.file\ntyped_config:\n  '@type': type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n" +
				indent(body, "  ")
			m := accesslog.NewFileManager(time.Hour)
			defer m.Close()
			l, err := accesslog.Build(parseAccessLog(t, y), accesslog.BuildContext{Path: "access_log[0]", Files: m})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Build error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Log(info())
			if err := m.Flush(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("logged %q, want %q", got, tc.want)
			}
		})
	}
}

func TestBuildByNameNeedsAPath(t *testing.T) {
	// Envoy builds a name-only entry with an empty config; FileAccessLog's
	// path is required, so that is an error.
	m := accesslog.NewFileManager(time.Hour)
	defer m.Close()
	_, err := accesslog.Build(&accesslogv3.AccessLog{Name: Name}, accesslog.BuildContext{Path: "al", Files: m})
	if err == nil || !strings.Contains(err.Error(), "al.typed_config.path") {
		t.Errorf("Build error = %v, want one at al.typed_config.path", err)
	}
}

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestREADMEExample builds the README's example and logs through it.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := yamlBlock.FindAllSubmatch(readme, -1)
	if len(blocks) != 1 {
		t.Fatalf("README has %d yaml blocks, want 1", len(blocks))
	}
	for _, url := range accesslog.Registry.TypeURLs() {
		if strings.Contains(url, "access_loggers.file.") && !strings.Contains(string(readme), url) {
			t.Errorf("README does not list registered type URL %s", url)
		}
	}
	path := filepath.Join(t.TempDir(), "access.log")
	y := strings.ReplaceAll(string(blocks[0][1]), "/tmp/herald-access.log", path)
	// The example is a complete bootstrap; its access logs sit on the
	// connection manager of the first listener.
	var boot struct {
		StaticResources struct {
			Listeners []struct {
				FilterChains []struct {
					Filters []struct {
						TypedConfig struct {
							AccessLog []json.RawMessage `json:"access_log"`
						} `json:"typed_config"`
					} `json:"filters"`
				} `json:"filter_chains"`
			} `json:"listeners"`
		} `json:"static_resources"`
	}
	if err := yaml.Unmarshal([]byte(y), &boot); err != nil {
		t.Fatal(err)
	}
	if len(boot.StaticResources.Listeners) == 0 {
		t.Fatal("example has no listener")
	}
	doc := boot.StaticResources.Listeners[0].FilterChains[0].Filters[0].TypedConfig
	if len(doc.AccessLog) != 1 {
		t.Fatalf("example has %d access logs, want 1", len(doc.AccessLog))
	}
	al := &accesslogv3.AccessLog{}
	if err := protojson.Unmarshal(doc.AccessLog[0], al); err != nil {
		t.Fatal(err)
	}
	m := accesslog.NewFileManager(time.Hour)
	defer m.Close()
	l, err := accesslog.Build(al, accesslog.BuildContext{Path: "access_log[0]", Files: m})
	if err != nil {
		t.Fatal(err)
	}
	ok := info()
	ok.ResponseCode = 200
	l.Log(ok)     // filtered out: status < 400
	l.Log(info()) // 404
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("line is not one JSON object: %v\n%s", err, b)
	}
	if got["status"] != 404.0 || got["method"] != "GET" {
		t.Errorf("logged %s, want the 404 GET only", b)
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n") + "\n"
}
