package accesslog

import (
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/streaminfo"
)

// recordLogger remembers the lines it was asked to log.
type recordLogger struct {
	mu    sync.Mutex
	lines []string
}

func (r *recordLogger) Log(info *streaminfo.Info) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprint(info.ResponseCode))
}

var testLoggers = map[string]*recordLogger{}

func init() {
	// A test-only access logger configured by a StringValue: its value names
	// the recordLogger to use; "fail" makes Build fail.
	Register(Extension[*wrapperspb.StringValue]{
		Name:   "herald.test.access_logger",
		Config: &wrapperspb.StringValue{},
		Build: func(cfg *wrapperspb.StringValue, ctx BuildContext) (Logger, error) {
			if cfg.GetValue() == "fail" {
				return nil, fmt.Errorf("%s: test failure", ctx.Path)
			}
			r := &recordLogger{}
			testLoggers[cfg.GetValue()] = r
			return r, nil
		},
	})
}

func accessLog(t *testing.T, js string) *accesslogv3.AccessLog {
	t.Helper()
	al := &accesslogv3.AccessLog{}
	if err := protojson.Unmarshal([]byte(js), al); err != nil {
		t.Fatalf("parse %s: %v", js, err)
	}
	return al
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		codes    []int
		wantLogs []string
		wantErr  string
	}{
		{
			name:     "typed config, no filter",
			config:   `{"name":"x","typed_config":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"a"}}`,
			codes:    []int{200, 503},
			wantLogs: []string{"200", "503"},
		},
		{
			name: "filter applies",
			config: `{"name":"x","typed_config":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"b"},
				"filter":{"status_code_filter":{"comparison":{"op":"GE","value":{"default_value":500,"runtime_key":"k"}}}}}`,
			codes:    []int{200, 503, 404, 500},
			wantLogs: []string{"503", "500"},
		},
		{
			name:    "unknown type",
			config:  `{"name":"x","typed_config":{"@type":"type.googleapis.com/google.protobuf.Int64Value","value":"1"}}`,
			wantErr: `access_log[0].typed_config: unknown access logger type "type.googleapis.com/google.protobuf.Int64Value"`,
		},
		{
			name:    "unknown name without typed config",
			config:  `{"name":"envoy.access_loggers.nope"}`,
			wantErr: `access_log[0].name: unknown access logger "envoy.access_loggers.nope"`,
		},
		{
			name:    "extension build error",
			config:  `{"name":"x","typed_config":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"fail"}}`,
			wantErr: "access_log[0].typed_config: test failure",
		},
		{
			name: "unsupported filter",
			config: `{"name":"x","typed_config":{"@type":"type.googleapis.com/google.protobuf.StringValue","value":"c"},
				"filter":{"runtime_filter":{"runtime_key":"k"}}}`,
			wantErr: "access_log[0].filter.runtime_filter: access log filter runtime_filter is not supported by herald yet",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Build(accessLog(t, tc.config), BuildContext{Path: "access_log[0]"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Build error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.codes {
				l.Log(&streaminfo.Info{StartTime: testStart, ResponseCode: c})
			}
			var got []string
			for _, r := range testLoggers {
				if len(r.lines) > 0 {
					got = r.lines
					r.lines = nil
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.wantLogs) {
				t.Errorf("logged %v, want %v", got, tc.wantLogs)
			}
		})
	}
}

func TestBuildByName(t *testing.T) {
	// Without typed_config the extension gets its empty config, as in Envoy.
	if _, err := Build(&accesslogv3.AccessLog{Name: "herald.test.access_logger"}, BuildContext{Path: "p"}); err != nil {
		t.Fatal(err)
	}
	if testLoggers[""] == nil {
		t.Error("extension was not built with an empty config")
	}
}

func TestFileLogger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	m := NewFileManager(time.Hour)
	defer m.Close()
	file, err := m.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l := NewFileLogger(MustNewFormatter("%RESPONSE_CODE% %REQ(:PATH)%\n"), file)
	info := typicalInfo()
	l.Log(info)
	info.ResponseCode = 503
	l.Log(info)
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, path), "204 /api/v1/locations\n503 /api/v1/locations\n"; got != want {
		t.Errorf("file holds %q, want %q", got, want)
	}
	if allocs := testing.AllocsPerRun(100, func() { l.Log(info) }); allocs != 0 {
		t.Errorf("FileLogger.Log allocates %v times per line, want 0", allocs)
	}
}
