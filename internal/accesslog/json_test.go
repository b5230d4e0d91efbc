package accesslog

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"
)

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJSONFormat(t *testing.T) {
	format := map[string]any{
		"start_time":   "%START_TIME%",
		"method":       "%REQ(:METHOD)%",
		"code":         "%RESPONSE_CODE%",
		"duration":     "%DURATION%",
		"flags":        "%RESPONSE_FLAGS%",
		"missing":      "%REQ(X-MISSING)%",
		"mixed":        "%RESPONSE_CODE% took %DURATION%ms from %REQ(X-MISSING)%",
		"literal":      "plain \"quoted\" text",
		"number":       42.0,
		"fraction":     0.5,
		"upstream":     map[string]any{"host": "%UPSTREAM_HOST%", "cluster": "%UPSTREAM_CLUSTER%", "gone": "%ROUTE_NAME%"},
		"list":         []any{"%PROTOCOL%", "%BYTES_RECEIVED%", "%REQ(X-MISSING)%"},
		"user_agent":   "%REQ(USER-AGENT)%",
		"empty_object": map[string]any{"a": "%REQ(X-MISSING)%"},
	}
	info := typicalInfo()
	info.RouteName = ""
	info.RequestHeaders.Set("user-agent", "curl \"7\"\n\x01é")

	tests := []struct {
		name string
		opts JSONOptions
		want map[string]any
	}{
		{
			name: "typed",
			opts: JSONOptions{},
			want: map[string]any{
				"start_time": "2016-04-15T20:17:00.310Z", "method": "POST", "code": 204.0, "duration": 226.0,
				"flags": "-", "missing": nil, "mixed": "204 took 226ms from -", "literal": `plain "quoted" text`,
				"number": 42.0, "fraction": 0.5,
				"upstream":     map[string]any{"host": "10.0.2.1:80", "cluster": "locations", "gone": nil},
				"list":         []any{"HTTP/1.1", 154.0, nil},
				"user_agent":   "curl \"7\"\n\x01é",
				"empty_object": map[string]any{"a": nil},
			},
		},
		{
			// The deprecated FileAccessLog.json_format: strings everywhere.
			name: "untyped",
			opts: JSONOptions{Untyped: true},
			want: map[string]any{
				"start_time": "2016-04-15T20:17:00.310Z", "method": "POST", "code": "204", "duration": "226",
				"flags": "-", "missing": "-", "mixed": "204 took 226ms from -", "literal": `plain "quoted" text`,
				"number": 42.0, "fraction": 0.5,
				"upstream":     map[string]any{"host": "10.0.2.1:80", "cluster": "locations", "gone": "-"},
				"list":         []any{"HTTP/1.1", "154", "-"},
				"user_agent":   "curl \"7\"\n\x01é",
				"empty_object": map[string]any{"a": "-"},
			},
		},
		{
			// Unset keys and objects left empty disappear; lists keep their
			// other elements.
			name: "omit empty values",
			opts: JSONOptions{OmitEmptyValues: true},
			want: map[string]any{
				"start_time": "2016-04-15T20:17:00.310Z", "method": "POST", "code": 204.0, "duration": 226.0,
				"flags": "-", "mixed": "204 took 226ms from ", "literal": `plain "quoted" text`,
				"number": 42.0, "fraction": 0.5,
				"upstream":   map[string]any{"host": "10.0.2.1:80", "cluster": "locations"},
				"list":       []any{"HTTP/1.1", 154.0},
				"user_agent": "curl \"7\"\n\x01é",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewJSONFormatter(mustStruct(t, format), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			line := f.Format(nil, info)
			if len(line) == 0 || line[len(line)-1] != '\n' || strings.Count(string(line), "\n") != 1 {
				t.Fatalf("line %q is not one line ending in a newline", line)
			}
			var got map[string]any
			if err := json.Unmarshal(line, &got); err != nil {
				t.Fatalf("output is not JSON: %v\n%s", err, line)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("JSON mismatch (-want +got):\n%s\nline: %s", diff, line)
			}
		})
	}
}

func TestJSONFormatSortedAndExact(t *testing.T) {
	f, err := NewJSONFormatter(mustStruct(t, map[string]any{
		"b": "%RESPONSE_CODE%", "a": "%PROTOCOL%", "c": map[string]any{"z": 1.0, "y": "x"},
	}), JSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"a":"HTTP/1.1","b":204,"c":{"y":"x","z":1}}` + "\n"
	if got := string(f.Format(nil, typicalInfo())); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	// The root object is written even when every key is omitted.
	f, err = NewJSONFormatter(mustStruct(t, map[string]any{"a": "%REQ(X-MISSING)%"}), JSONOptions{OmitEmptyValues: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(f.Format(nil, typicalInfo())); got != "{}\n" {
		t.Errorf("all omitted: got %q, want %q", got, "{}\n")
	}
}

func TestJSONFormatErrors(t *testing.T) {
	tests := []struct {
		name    string
		format  map[string]any
		wantKey string
		wantErr string
	}{
		{name: "unknown operator", format: map[string]any{"a": map[string]any{"b": "%NOPE%"}}, wantKey: "a.b", wantErr: "not supported by herald yet"},
		{name: "bool value", format: map[string]any{"flag": true}, wantKey: "flag", wantErr: "only string values"},
		{name: "in a list", format: map[string]any{"l": []any{"ok", "%BAD("}}, wantKey: "l[1]", wantErr: "not a valid command operator"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewJSONFormatter(mustStruct(t, tc.format), JSONOptions{})
			var fe *JSONFieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is not a *JSONFieldError", err)
			}
			if fe.Key != tc.wantKey || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got key %q error %q, want key %q containing %q", fe.Key, err, tc.wantKey, tc.wantErr)
			}
		})
	}
}

func TestJSONEscaping(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{name: "plain", in: "abc", want: `abc`},
		{name: "quote and backslash", in: `a"b\c`, want: `a\"b\\c`},
		{name: "controls", in: "\n\r\t\b\f\x01", want: `\n\r\t\b\f\u0001`},
		{name: "utf8 kept", in: "héllo ☃", want: "héllo ☃"},
		{name: "invalid utf8 replaced", in: "a\xffb", want: `a\ufffdb`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(appendJSONEscaped(nil, tc.in)); got != tc.want {
				t.Errorf("appendJSONEscaped(%q) = %q, want %q", tc.in, got, tc.want)
			}
			dst := append([]byte("x"), tc.in...)
			if got := string(escapeTail(dst, 1)); got != "x"+tc.want {
				t.Errorf("escapeTail(%q) = %q, want %q", tc.in, got, "x"+tc.want)
			}
		})
	}
}

func BenchmarkFormatJSON(b *testing.B) {
	s, _ := structpb.NewStruct(map[string]any{
		"start_time": "%START_TIME%", "method": "%REQ(:METHOD)%", "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
		"protocol": "%PROTOCOL%", "code": "%RESPONSE_CODE%", "flags": "%RESPONSE_FLAGS%",
		"bytes_received": "%BYTES_RECEIVED%", "bytes_sent": "%BYTES_SENT%", "duration": "%DURATION%",
		"upstream_host": "%UPSTREAM_HOST%", "user_agent": "%REQ(USER-AGENT)%", "request_id": "%REQ(X-REQUEST-ID)%",
	})
	f, err := NewJSONFormatter(s, JSONOptions{})
	if err != nil {
		b.Fatal(err)
	}
	info := typicalInfo()
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = f.Format(buf[:0], info)
	}
}
