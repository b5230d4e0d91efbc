package router

import (
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

func TestParseGrpcTimeout(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{in: "1S", want: time.Second, ok: true},
		{in: "250m", want: 250 * time.Millisecond, ok: true},
		{in: "2H", want: 2 * time.Hour, ok: true},
		{in: "3M", want: 3 * time.Minute, ok: true},
		{in: "7u", want: 7 * time.Microsecond, ok: true},
		{in: "99999999n", want: 99999999, ok: true},
		{in: "123456789S", ok: false}, // more than 8 digits
		{in: "S", ok: false},
		{in: "", ok: false},
		{in: "10", ok: false},
		{in: "1x", ok: false},
		{in: "-1S", ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, ok := parseGrpcTimeout(tc.in)
			if ok != tc.ok || (ok && got != tc.want) {
				t.Errorf("parseGrpcTimeout(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestStreamDuration(t *testing.T) {
	set := func(d time.Duration) optDuration { return optDuration{d: d, set: true} }
	tests := []struct {
		name     string
		msd      optDuration
		max, off optDuration
		grpc     string
		want     time.Duration
		wantSet  bool
	}{
		{name: "nothing configured", grpc: "1S"},
		{name: "max_stream_duration", msd: set(3 * time.Second), want: 3 * time.Second, wantSet: true},
		{name: "max_stream_duration 0 disables", msd: set(0)},
		{name: "grpc-timeout ignored without header max", msd: set(3 * time.Second), grpc: "1S", want: 3 * time.Second, wantSet: true},
		{name: "grpc-timeout under the cap", max: set(5 * time.Second), grpc: "2S", want: 2 * time.Second, wantSet: true},
		{name: "grpc-timeout capped", max: set(5 * time.Second), grpc: "20S", want: 5 * time.Second, wantSet: true},
		{name: "cap 0 means the header as is", max: set(0), grpc: "20S", want: 20 * time.Second, wantSet: true},
		{name: "offset subtracted", max: set(0), off: set(100 * time.Millisecond), grpc: "1S", want: 900 * time.Millisecond, wantSet: true},
		{name: "offset larger than the timeout", max: set(0), off: set(2 * time.Second), grpc: "1S", want: 0, wantSet: true},
		{name: "header max without header: max_stream_duration", msd: set(4 * time.Second), max: set(time.Second), want: 4 * time.Second, wantSet: true},
		{name: "header max without header or msd", max: set(time.Second)},
		{name: "bad header falls back", msd: set(4 * time.Second), max: set(time.Second), grpc: "soon", want: 4 * time.Second, wantSet: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &Route{maxStreamDuration: tc.msd, grpcTimeoutMax: tc.max, grpcTimeoutOffset: tc.off}
			h := &hhttp.Headers{}
			if tc.grpc != "" {
				h.Add("grpc-timeout", tc.grpc)
			}
			got, ok := r.StreamDuration(h)
			if ok != tc.wantSet || got != tc.want {
				t.Errorf("StreamDuration = %v, %v; want %v, %v", got, ok, tc.want, tc.wantSet)
			}
		})
	}
}
