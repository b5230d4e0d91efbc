package httpfiltertest

import (
	"sync"
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// tagEncoder marks every response it encodes.
type tagEncoder struct{}

func (tagEncoder) EncodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	h.Add("x-encoded", "1")
	return httpfilter.Continue
}
func (tagEncoder) EncodeData([]byte, bool) httpfilter.Status       { return httpfilter.Continue }
func (tagEncoder) EncodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

func TestSendLocalReply(t *testing.T) {
	tests := []struct {
		name       string
		grpc       bool
		body       string
		wantStatus string
		wantGRPC   string
	}{
		{name: "http", body: "nope", wantStatus: "429"},
		{name: "grpc", grpc: true, wantStatus: "200", wantGRPC: "14"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cb := &Callbacks{GRPC: tc.grpc, Filter: tagEncoder{}}
			if cb.ResponseStarted() {
				t.Fatal("ResponseStarted before any reply")
			}
			cb.SendLocalReply(429, tc.body, "details", func(h *hhttp.Headers) { h.Add("x-modified", "1") })
			if len(cb.Replies) != 1 || !cb.ResponseStarted() {
				t.Fatalf("Replies = %+v, ResponseStarted %v; want one reply", cb.Replies, cb.ResponseStarted())
			}
			r := cb.Replies[0]
			if r.Code != 429 || r.Body != tc.body || r.Details != "details" || cb.Info.ResponseCodeDetails != "details" {
				t.Errorf("reply %+v (info details %q), want code 429 body %q details %q", r, cb.Info.ResponseCodeDetails, tc.body, "details")
			}
			for name, want := range map[string]string{":status": tc.wantStatus, "grpc-status": tc.wantGRPC, "x-modified": "1", "x-encoded": "1"} {
				if got := r.Headers.Get(name); got != want {
					t.Errorf("header %s = %q, want %q", name, got, want)
				}
			}
		})
	}
}

func TestRoutes(t *testing.T) {
	cb := &Callbacks{MatchedRoute: Route{"f": 1}}
	if got := httpfilter.AllPerFilterConfigs(cb.Route(), nil, "f"); len(got) != 1 || got[0] != 1 {
		t.Errorf("Route configs = %v, want [1]", got)
	}
	cb.MatchedRoute = ListRoute{Levels: []any{1, 2}}
	if got := httpfilter.AllPerFilterConfigs(cb.Route(), nil, "f"); len(got) != 2 || got[0] != 1 || got[1] != 2 {
		t.Errorf("ListRoute configs = %v, want [1 2]", got)
	}
}

func TestConnCallbacks(t *testing.T) {
	var conn sync.Map
	a := ConnCallbacks{Callbacks: &Callbacks{}, Conn: &conn}
	b := ConnCallbacks{Callbacks: &Callbacks{}, Conn: &conn}
	first := a.ConnectionValue("k", func() any { return 1 })
	if got := b.ConnectionValue("k", func() any { return 2 }); got != first {
		t.Errorf("second stream of the connection got %v, want the first's %v", got, first)
	}
}
