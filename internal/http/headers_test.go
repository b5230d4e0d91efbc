package http

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func fields(kv ...string) []HeaderField {
	var out []HeaderField
	for i := 0; i < len(kv); i += 2 {
		out = append(out, HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func TestHeadersMutations(t *testing.T) {
	tests := []struct {
		name string
		in   []HeaderField
		op   func(h *Headers)
		want []HeaderField
	}{
		{name: "add pseudo-header keeps pseudo-headers first",
			in: fields(":method", "GET", "a", "1"), op: func(h *Headers) { h.Add(":path", "/") },
			want: fields(":method", "GET", ":path", "/", "a", "1")},
		{name: "set replaces every value at the first position",
			in: fields("a", "1", "b", "2", "a", "3"), op: func(h *Headers) { h.Set("a", "x") },
			want: fields("a", "x", "b", "2")},
		{name: "set appends when absent",
			in: fields("b", "2"), op: func(h *Headers) { h.Set("a", "x") },
			want: fields("b", "2", "a", "x")},
		{name: "del removes all",
			in: fields("a", "1", "b", "2", "a", "3"), op: func(h *Headers) { h.Del("a") },
			want: fields("b", "2")},
		{name: "del prefix",
			in: fields("x-envoy-a", "1", "b", "2", "x-envoy-c", "3"), op: func(h *Headers) { h.DelPrefix("x-envoy-") },
			want: fields("b", "2")},
		{name: "set if absent keeps existing",
			in: fields("a", "1"), op: func(h *Headers) { h.SetIfAbsent("a", "2") },
			want: fields("a", "1")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &Headers{Fields: append([]HeaderField(nil), tc.in...)}
			tc.op(h)
			if diff := cmp.Diff(tc.want, h.Fields); diff != "" {
				t.Fatalf("fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHeadersLookups(t *testing.T) {
	h := &Headers{Fields: fields(":status", "204", "a", "1", "a", "2")}
	if got := h.StatusCode(); got != 204 {
		t.Errorf("StatusCode() = %d, want 204", got)
	}
	if got := h.Values(nil, "a"); !cmp.Equal(got, []string{"1", "2"}) {
		t.Errorf("Values(a) = %v", got)
	}
	if _, ok := h.Lookup("b"); ok {
		t.Error("Lookup(b) found a missing header")
	}
	if got := StatusText3(503); got != "503" {
		t.Errorf("StatusText3(503) = %q", got)
	}
	if got := (&Headers{Fields: fields(":status", "2x4")}).StatusCode(); got != 0 {
		t.Errorf("malformed :status = %d, want 0", got)
	}
}
