package http

import "testing"

func TestIsGRPCContentType(t *testing.T) {
	tests := []struct {
		ct   string
		want bool
	}{
		{ct: "application/grpc", want: true},
		{ct: "application/grpc+proto", want: true},
		{ct: "application/grpc+json", want: true},
		{ct: "application/grpc-web", want: false},
		{ct: "application/grpc-web+proto", want: false},
		{ct: "application/grpcx", want: false},
		{ct: "application/json", want: false},
		{ct: "", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.ct, func(t *testing.T) {
			if got := IsGRPCContentType(tc.ct); got != tc.want {
				t.Errorf("IsGRPCContentType(%q) = %v, want %v", tc.ct, got, tc.want)
			}
		})
	}
}

func TestIsGRPCResponseHeaders(t *testing.T) {
	mk := func(kv ...string) *Headers {
		h := &Headers{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name      string
		h         *Headers
		endStream bool
		want      bool
	}{
		{name: "200 grpc", h: mk(Status, "200", "content-type", "application/grpc"), want: true},
		{name: "503 grpc", h: mk(Status, "503", "content-type", "application/grpc")},
		{name: "200 json", h: mk(Status, "200", "content-type", "application/json")},
		{name: "trailers-only", h: mk(Status, "200", "grpc-status", "12"), endStream: true, want: true},
		{name: "headers-only without grpc-status", h: mk(Status, "200", "content-type", "application/grpc"), endStream: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := IsGRPCResponseHeaders(tc.h, tc.endStream); got != tc.want {
				t.Errorf("IsGRPCResponseHeaders = %v, want %v", got, tc.want)
			}
		})
	}
}
