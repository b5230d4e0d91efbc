package accesslog

import (
	"testing"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/streaminfo"
)

func TestDynamicMetadata(t *testing.T) {
	md, err := structpb.NewStruct(map[string]any{
		"test_key":    "foo",
		"test_object": map[string]any{"inner_key": "bar", "n": 42.0},
		"flag":        true,
		"list":        []any{"a", 1.5},
	})
	if err != nil {
		t.Fatal(err)
	}
	info := &streaminfo.Info{}
	info.SetDynamicMetadata("com.test.my_filter", md)
	tests := []struct {
		name   string
		format string
		want   string
	}{
		// Envoy's examples (access_log/usage#config-access-log-format-dynamic-metadata).
		{name: "whole namespace", format: "%DYNAMIC_METADATA(com.test.my_filter)%", want: `{"flag":true,"list":["a",1.5],"test_key":"foo","test_object":{"inner_key":"bar","n":42}}`},
		{name: "string", format: "%DYNAMIC_METADATA(com.test.my_filter:test_key)%", want: "foo"},
		{name: "object", format: "%DYNAMIC_METADATA(com.test.my_filter:test_object)%", want: `{"inner_key":"bar","n":42}`},
		{name: "nested", format: "%DYNAMIC_METADATA(com.test.my_filter:test_object:inner_key)%", want: "bar"},
		{name: "number", format: "%DYNAMIC_METADATA(com.test.my_filter:test_object:n)%", want: "42"},
		{name: "bool", format: "%DYNAMIC_METADATA(com.test.my_filter:flag)%", want: "true"},
		{name: "unknown namespace", format: "%DYNAMIC_METADATA(com.unknown_filter)%", want: "-"},
		{name: "unknown key", format: "%DYNAMIC_METADATA(com.test.my_filter:unknown_key)%", want: "-"},
		{name: "key below a string", format: "%DYNAMIC_METADATA(com.test.my_filter:test_key:x)%", want: "-"},
		{name: "truncated", format: "%DYNAMIC_METADATA(com.test.my_filter:test_object):5%", want: `{"inn`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFormatter(tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if got := string(f.Format(nil, info)); got != tc.want {
				t.Errorf("Format = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := NewFormatter("%DYNAMIC_METADATA%"); err == nil {
		t.Errorf("%%DYNAMIC_METADATA%% without a namespace was accepted")
	}
}

func TestSetDynamicMetadataMerges(t *testing.T) {
	info := &streaminfo.Info{}
	a, _ := structpb.NewStruct(map[string]any{"a": "1", "b": "1"})
	b, _ := structpb.NewStruct(map[string]any{"b": "2"})
	info.SetDynamicMetadata("ns", a)
	info.SetDynamicMetadata("ns", b)
	got := info.DynamicMetadataFor("ns").AsMap()
	if got["a"] != "1" || got["b"] != "2" {
		t.Errorf("merged metadata = %v, want a=1 b=2", got)
	}
}

// TestDynamicMetadataScalarDoesNotAllocate: a string or number value is
// appended without allocating per log line.
func TestDynamicMetadataScalarDoesNotAllocate(t *testing.T) {
	md, err := structpb.NewStruct(map[string]any{"k": "foo", "o": map[string]any{"n": 42.0}})
	if err != nil {
		t.Fatal(err)
	}
	info := &streaminfo.Info{}
	info.SetDynamicMetadata("ns", md)
	for _, format := range []string{"%DYNAMIC_METADATA(ns:k)%", "%DYNAMIC_METADATA(ns:o:n)%", "%DYNAMIC_METADATA(ns:missing)%"} {
		t.Run(format, func(t *testing.T) {
			f, err := NewFormatter(format)
			if err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 0, 64)
			if n := testing.AllocsPerRun(100, func() { buf = f.Format(buf[:0], info) }); n != 0 {
				t.Errorf("Format(%s) allocates %v times per line, want 0", format, n)
			}
		})
	}
}
