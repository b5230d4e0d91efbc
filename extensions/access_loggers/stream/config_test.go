package stream

import (
	"encoding/json"
	"io"
	"os"
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

func info(code int) *streaminfo.Info {
	start := time.Date(2024, 1, 2, 3, 4, 5, 6_000_000, time.UTC)
	req := &hhttp.Headers{}
	req.Add(":method", "GET")
	req.Add(":path", "/x")
	return &streaminfo.Info{
		StartTime: start, EndTime: start.Add(12 * time.Millisecond), Protocol: "HTTP/1.1",
		RequestHeaders: req, ResponseCode: code, UpstreamHost: "127.0.0.1:8080",
	}
}

// captureStreams points os.Stdout and os.Stderr at pipes for the test and
// returns functions that read what was written (after the writers close).
func captureStreams(t *testing.T) (stdout, stderr func() string) {
	t.Helper()
	capture := func(target **os.File) func() string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		old := *target
		*target = w
		t.Cleanup(func() { *target = old; r.Close() })
		done := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(r)
			done <- string(b)
		}()
		return func() string {
			w.Close()
			return <-done
		}
	}
	return capture(&os.Stdout), capture(&os.Stderr)
}

func buildLogger(t *testing.T, m *accesslog.FileManager, js []byte) (accesslog.Logger, error) {
	t.Helper()
	al := &accesslogv3.AccessLog{}
	if err := protojson.Unmarshal(js, al); err != nil {
		t.Fatalf("protojson: %v\n%s", err, js)
	}
	if err := al.Validate(); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return accesslog.Build(al, accesslog.BuildContext{Path: "access_log[0]", Files: m})
}

func TestConfig(t *testing.T) {
	defaultLine := `[2024-01-02T03:04:05.006Z] "GET /x HTTP/1.1" 404 - 0 0 12 - "-" "-" "-" "-" "127.0.0.1:8080"` + "\n"
	tests := []struct {
		name       string
		config     string
		wantStdout string
		wantStderr string
		wantErr    string
	}{
		{name: "stdout default format", config: `{"name":"envoy.access_loggers.stdout","typed_config":{"@type":"type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog"}}`,
			wantStdout: defaultLine},
		{name: "stdout by name only", config: `{"name":"envoy.access_loggers.stdout"}`, wantStdout: defaultLine},
		{name: "stderr text format", config: `{"name":"envoy.access_loggers.stderr","typed_config":{"@type":"type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog",
			"log_format":{"text_format_source":{"inline_string":"%RESPONSE_CODE% %REQ(:PATH)%\n"}}}}`,
			wantStderr: "404 /x\n"},
		{name: "stdout json format", config: `{"name":"envoy.access_loggers.stdout","typed_config":{"@type":"type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
			"log_format":{"json_format":{"code":"%RESPONSE_CODE%","path":"%REQ(:PATH)%"}}}}`,
			wantStdout: `{"code":404,"path":"/x"}` + "\n"},
		{name: "unknown operator", config: `{"name":"envoy.access_loggers.stdout","typed_config":{"@type":"type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
			"log_format":{"json_format":{"a":"%NOPE%"}}}}`,
			wantErr: "access_log[0].typed_config.log_format.json_format.a: accesslog: %NOPE% at position 0: command operator not supported by herald yet"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr := captureStreams(t)
			m := accesslog.NewFileManager(time.Hour)
			l, err := buildLogger(t, m, []byte(tc.config))
			if tc.wantErr != "" {
				m.Close()
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Build error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			l.Log(info(404))
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if got := stdout(); got != tc.wantStdout {
				t.Errorf("stdout %q, want %q", got, tc.wantStdout)
			}
			if got := stderr(); got != tc.wantStderr {
				t.Errorf("stderr %q, want %q", got, tc.wantStderr)
			}
		})
	}
}

var yamlBlock = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestREADMEExample builds the README's example and logs through it.
func TestREADMEExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, url := range accesslog.Registry.TypeURLs() {
		if strings.Contains(url, "access_loggers.stream.") && !strings.Contains(string(readme), url) {
			t.Errorf("README does not list registered type URL %s", url)
		}
	}
	blocks := yamlBlock.FindAllSubmatch(readme, -1)
	if len(blocks) != 1 {
		t.Fatalf("README has %d yaml blocks, want 1", len(blocks))
	}
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
	if err := yaml.Unmarshal(blocks[0][1], &boot); err != nil {
		t.Fatal(err)
	}
	if len(boot.StaticResources.Listeners) == 0 {
		t.Fatal("example has no listener")
	}
	doc := boot.StaticResources.Listeners[0].FilterChains[0].Filters[0].TypedConfig
	if len(doc.AccessLog) != 2 {
		t.Fatalf("example has %d access logs, want 2", len(doc.AccessLog))
	}
	stdout, stderr := captureStreams(t)
	m := accesslog.NewFileManager(time.Hour)
	var loggers []accesslog.Logger
	for _, js := range doc.AccessLog {
		l, err := buildLogger(t, m, js)
		if err != nil {
			m.Close()
			t.Fatal(err)
		}
		loggers = append(loggers, l)
	}
	for _, code := range []int{200, 503} {
		for _, l := range loggers {
			l.Log(info(code))
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	wantOut := "2024-01-02T03:04:05.006Z GET /x 200 - 12ms 127.0.0.1:8080\n2024-01-02T03:04:05.006Z GET /x 503 - 12ms 127.0.0.1:8080\n"
	if got := stdout(); got != wantOut {
		t.Errorf("stdout %q, want %q", got, wantOut)
	}
	// stderr only gets the 5xx line, in the default format.
	if got := stderr(); !strings.Contains(got, `"GET /x HTTP/1.1" 503 `) || strings.Count(got, "\n") != 1 {
		t.Errorf("stderr %q, want the one 503 line", got)
	}
}
