package headeroption

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

func option(key, value string, action corev3.HeaderValueOption_HeaderAppendAction) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, AppendAction: action}
}

func fields(kv ...string) []hhttp.HeaderField {
	out := []hhttp.HeaderField{}
	for i := 0; i < len(kv); i += 2 {
		out = append(out, hhttp.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return out
}

func TestCompileListAndApply(t *testing.T) {
	tests := []struct {
		name string
		opts []*corev3.HeaderValueOption
		in   []hhttp.HeaderField
		want []hhttp.HeaderField
	}{
		{
			name: "append is the default action and keeps existing values",
			opts: []*corev3.HeaderValueOption{option("X-A", "2", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)},
			in:   fields("x-a", "1"),
			want: fields("x-a", "1", "x-a", "2"),
		},
		{
			name: "add_if_absent skips a present header",
			opts: []*corev3.HeaderValueOption{
				option("x-a", "2", corev3.HeaderValueOption_ADD_IF_ABSENT),
				option("x-b", "3", corev3.HeaderValueOption_ADD_IF_ABSENT),
			},
			in:   fields("x-a", "1"),
			want: fields("x-a", "1", "x-b", "3"),
		},
		{
			name: "overwrite_if_exists only replaces",
			opts: []*corev3.HeaderValueOption{
				option("x-a", "2", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
				option("x-b", "3", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS),
			},
			in:   fields("x-a", "1"),
			want: fields("x-a", "2"),
		},
		{
			name: "overwrite_if_exists_or_add replaces or adds",
			opts: []*corev3.HeaderValueOption{
				option("x-a", "2", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
				option("x-b", "3", corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD),
			},
			in:   fields("x-a", "1"),
			want: fields("x-a", "2", "x-b", "3"),
		},
		{
			// Options run one after the other: the second sees the first's header.
			name: "later options see earlier ones",
			opts: []*corev3.HeaderValueOption{
				option("x-a", "1", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
				option("x-a", "2", corev3.HeaderValueOption_ADD_IF_ABSENT),
			},
			want: fields("x-a", "1"),
		},
		{
			name: "deprecated append false overwrites",
			opts: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-a", Value: "2"}, Append: wrapperspb.Bool(false)}},
			in:   fields("x-a", "1"),
			want: fields("x-a", "2"),
		},
		{
			name: "deprecated append true appends",
			opts: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-a", Value: "2"}, Append: wrapperspb.Bool(true)}},
			in:   fields("x-a", "1"),
			want: fields("x-a", "1", "x-a", "2"),
		},
		{
			name: "empty value is skipped",
			opts: []*corev3.HeaderValueOption{option("x-a", "", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)},
			want: fields(),
		},
		{
			name: "empty value kept with keep_empty_value",
			opts: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-a"}, KeepEmptyValue: true}},
			want: fields("x-a", ""),
		},
		{
			name: "raw_value when value is empty",
			opts: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-a", RawValue: []byte("raw")}}},
			want: fields("x-a", "raw"),
		},
		{
			name: "%% is a literal percent",
			opts: []*corev3.HeaderValueOption{option("x-a", "100%%", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)},
			want: fields("x-a", "100%"),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var errs configerr.List
			l := CompileList(tc.opts, "p", &errs)
			if err := errs.Err(); err != nil {
				t.Fatalf("CompileList: %v", err)
			}
			h := &hhttp.Headers{Fields: append([]hhttp.HeaderField{}, tc.in...)}
			l.Apply(h)
			if diff := cmp.Diff(tc.want, h.Fields); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompileListErrors(t *testing.T) {
	tests := []struct {
		name    string
		opts    []*corev3.HeaderValueOption
		wantErr string
		wantLen int // options that compiled
	}{
		{
			name: "append with append_action",
			opts: []*corev3.HeaderValueOption{
				option("x-ok", "1", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD),
				{Header: &corev3.HeaderValue{Key: "x-a", Value: "1"}, Append: wrapperspb.Bool(true), AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT},
			},
			wantErr: "p[1]: Both append and append_action are set and it's not allowed",
			wantLen: 1,
		},
		{
			name:    "command operator in value",
			opts:    []*corev3.HeaderValueOption{option("x-a", "%PROTOCOL%", corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD)},
			wantErr: "p[0].header.value: command operators in header values are not supported by herald yet",
		},
		{
			name:    "command operator in raw_value",
			opts:    []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-a", RawValue: []byte("50%")}}},
			wantErr: "p[0].header.raw_value: command operators",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var errs configerr.List
			l := CompileList(tc.opts, "p", &errs)
			err := errs.Err()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
			if len(l) != tc.wantLen {
				t.Errorf("compiled %d options, want %d", len(l), tc.wantLen)
			}
		})
	}
}
