package connmgr

import (
	"net/netip"
	"regexp"
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

func TestXFFAddress(t *testing.T) {
	tests := []struct {
		name   string
		xff    string
		hops   int
		want   string
		wantOK bool
	}{
		{name: "single entry, no trusted hops", xff: "1.2.3.4", hops: 0, want: "1.2.3.4", wantOK: true},
		{name: "rightmost entry with no trusted hops", xff: "1.2.3.4, 5.6.7.8", hops: 0, want: "5.6.7.8", wantOK: true},
		// Envoy: the trusted client address is the (hops+1)-th from the right.
		{name: "one trusted hop", xff: "1.2.3.4,5.6.7.8", hops: 1, want: "1.2.3.4", wantOK: true},
		{name: "more hops than entries", xff: "1.2.3.4", hops: 1, wantOK: false},
		{name: "garbage entry", xff: "not-an-ip", hops: 0, wantOK: false},
		{name: "IPv6 entry", xff: "10.0.0.1, 2001:db8::1", hops: 0, want: "2001:db8::1", wantOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := xffAddress(tc.xff, tc.hops)
			if ok != tc.wantOK {
				t.Fatalf("xffAddress(%q, %d) ok = %v, want %v", tc.xff, tc.hops, ok, tc.wantOK)
			}
			if ok && got.String() != tc.want {
				t.Fatalf("xffAddress(%q, %d) = %s, want %s", tc.xff, tc.hops, got, tc.want)
			}
		})
	}
}

func TestIsInternal(t *testing.T) {
	tests := []struct {
		addr string
		want bool
	}{
		{addr: "10.1.2.3", want: true},
		{addr: "172.16.0.1", want: true},
		{addr: "192.168.1.1", want: true},
		{addr: "127.0.0.1", want: true},
		{addr: "::1", want: true},
		{addr: "fd00::1", want: true},
		{addr: "8.8.8.8", want: false},
		{addr: "2001:db8::1", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			if got := isInternal(netip.MustParseAddr(tc.addr)); got != tc.want {
				t.Fatalf("isInternal(%s) = %v, want %v", tc.addr, got, tc.want)
			}
		})
	}
}

func TestNewRequestIDIsUUIDv4(t *testing.T) {
	re := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		id := newRequestID(nil)
		if i%2 == 1 {
			id = newRequestID(make([]byte, requestIDLen))
		}
		if !re.MatchString(id) {
			t.Fatalf("request id %q is not a UUIDv4", id)
		}
		if seen[id] {
			t.Fatalf("request id %q repeated", id)
		}
		seen[id] = true
	}
}

func TestGRPCStatusFromHTTP(t *testing.T) {
	// Envoy's Grpc::Utility::httpToGrpcStatus.
	tests := []struct {
		code int
		want int
	}{
		{code: 400, want: 13}, {code: 401, want: 16}, {code: 403, want: 7}, {code: 404, want: 12},
		{code: 429, want: 14}, {code: 502, want: 14}, {code: 503, want: 14}, {code: 504, want: 14},
		{code: 500, want: 2}, {code: 418, want: 2},
	}
	for _, tc := range tests {
		if got := GRPCStatusFromHTTP(tc.code); got != tc.want {
			t.Errorf("GRPCStatusFromHTTP(%d) = %d, want %d", tc.code, got, tc.want)
		}
	}
}

func TestGRPCPercentEncode(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{in: "no healthy upstream", want: "no healthy upstream"},
		{in: "100%", want: "100%25"},
		{in: "line\nbreak", want: "line%0Abreak"},
		{in: "caf\xc3\xa9", want: "caf%C3%A9"},
	}
	for _, tc := range tests {
		if got := GRPCPercentEncode(tc.in); got != tc.want {
			t.Errorf("GRPCPercentEncode(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestAppendXFF(t *testing.T) {
	tests := []struct {
		name     string
		existing []string
		add      string
		want     string
	}{
		{name: "absent", add: "1.1.1.1", want: "1.1.1.1"},
		{name: "appended with comma", existing: []string{"2.2.2.2"}, add: "1.1.1.1", want: "2.2.2.2,1.1.1.1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := &hhttp.Headers{}
			for _, v := range tc.existing {
				h.Add(hdrXForwardedFor, v)
			}
			appendXFF(h, tc.add)
			if got := h.Get(hdrXForwardedFor); got != tc.want || h.Count(hdrXForwardedFor) != 1 {
				t.Fatalf("x-forwarded-for = %q (%d fields), want %q in one field", got, h.Count(hdrXForwardedFor), tc.want)
			}
		})
	}
}
