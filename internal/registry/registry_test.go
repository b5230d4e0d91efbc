package registry

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

type ext struct{ name string }

func newCfg(e *ext) proto.Message { return &durationpb.Duration{} }

func TestRegisterAndLookup(t *testing.T) {
	r := New[*ext]("test extension")
	r.Register("x.duration", &durationpb.Duration{}, &ext{name: "d"})
	if e, ok := r.ByName("x.duration"); !ok || e.name != "d" {
		t.Fatalf("ByName = %v, %v", e, ok)
	}
	if e, ok := r.ByTypeURL("type.googleapis.com/google.protobuf.Duration"); !ok || e.name != "d" {
		t.Fatalf("ByTypeURL = %v, %v", e, ok)
	}
	if got := r.Names(); len(got) != 1 || got[0] != "x.duration" {
		t.Fatalf("Names = %v", got)
	}
}

func TestRegisterDuplicatePanics(t *testing.T) {
	tests := []struct {
		name   string
		second func(r *Registry[*ext])
	}{
		{name: "same name", second: func(r *Registry[*ext]) { r.Register("x.a", &emptypb.Empty{}, &ext{}) }},
		{name: "same type URL", second: func(r *Registry[*ext]) { r.Register("x.b", &durationpb.Duration{}, &ext{}) }},
		{name: "empty name", second: func(r *Registry[*ext]) { r.Register("", &emptypb.Empty{}, &ext{}) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := New[*ext]("test extension")
			r.Register("x.a", &durationpb.Duration{}, &ext{})
			defer func() {
				if recover() == nil {
					t.Fatal("second registration did not panic")
				}
			}()
			tc.second(r)
		})
	}
}

func TestResolve(t *testing.T) {
	r := New[*ext]("test extension")
	r.Register("x.duration", &durationpb.Duration{}, &ext{name: "d"})
	good, _ := anypb.New(durationpb.New(5))
	other, _ := anypb.New(wrapperspb.Bool(true))
	tests := []struct {
		name    string
		extName string
		tc      *anypb.Any
		wantErr string
	}{
		{name: "by type URL", extName: "whatever", tc: good},
		{name: "by name without typed_config", extName: "x.duration"},
		// "typed_config: {}" resolves by name with the default config, as Envoy.
		{name: "by name with an empty typed_config", extName: "x.duration", tc: &anypb.Any{}},
		{name: "unknown name with an empty typed_config", extName: "x.nope", tc: &anypb.Any{},
			wantErr: `filters[0].name: test extension "x.nope" is not supported by herald`},
		{name: "unknown type URL", extName: "x.bool", tc: other,
			wantErr: `filters[0].typed_config: test extension "x.bool" (type.googleapis.com/google.protobuf.BoolValue) is not supported by herald (supported: x.duration)`},
		{name: "unknown name", extName: "x.nope",
			wantErr: `filters[0].name: test extension "x.nope" is not supported by herald (supported: x.duration)`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, cfg, err := Resolve(r, newCfg, tc.extName, tc.tc, "filters[0]")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || e.name != "d" {
				t.Fatalf("Resolve = %v, %v", e, err)
			}
			if tc.tc != nil && tc.tc.GetTypeUrl() != "" && cfg.(*durationpb.Duration).AsDuration() != 5 {
				t.Fatalf("config not unpacked: %v", cfg)
			}
		})
	}
}
