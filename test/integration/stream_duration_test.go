package integration

import (
	"io"
	nethttp "net/http"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestRouteMaxStreamDuration: a route's max_stream_duration ends a stream
// that outlives it, as Envoy's onStreamMaxDurationReached: 504 once the
// request is complete, "downstream duration timeout", counted in
// downstream_rq_max_duration_reached; the route timeout (0 here) is not
// what fires.
func TestRouteMaxStreamDuration(t *testing.T) {
	t.Parallel()
	hang := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		// Read the body first: Go's server notices a closed connection
		// (and cancels the context) only once the body is consumed.
		io.Copy(io.Discard, r.Body)
		<-r.Context().Done()
	}))
	fast := testutil.HTTPBackend(t, httpHandler("fast"))
	vhosts := `            - name: vh
              domains: ["*"]
              routes:
              - match: { prefix: "/hang" }
                route: { cluster: hang, timeout: 0s, max_stream_duration: { max_stream_duration: 0.2s } }
              - match: { prefix: "/" }
                route: { cluster: fast, max_stream_duration: { max_stream_duration: 5s } }`
	h := testutil.Start(t, bootstrap([]string{extraHCMListener(hcmSpec{name: "web", vhosts: vhosts})},
		staticCluster("hang", hang), staticCluster("fast", fast)))
	c := newClient()
	code, _, body := get(t, c, "http://"+h.ListenerAddr("web")+"/hang", "")
	if code != 504 || body != "downstream duration timeout" {
		t.Errorf("GET /hang = %d %q, want 504 \"downstream duration timeout\"", code, body)
	}
	code, _, body = get(t, c, "http://"+h.ListenerAddr("web")+"/", "")
	if code != 200 || body != "fast" {
		t.Errorf("GET / = %d %q, want 200 fast (the stream ends well within its 5 s)", code, body)
	}
	waitStat(t, h, "http.ingress_http.downstream_rq_max_duration_reached", 1)

	// A request whose body is still arriving gets 408.
	pr, pw := io.Pipe()
	defer pw.Close()
	go pw.Write([]byte("x"))
	resp, err := newClient().Post("http://"+h.ListenerAddr("web")+"/hang", "text/plain", pr)
	if err == nil {
		defer resp.Body.Close()
		if resp.StatusCode != 408 {
			t.Errorf("POST /hang with an unfinished body = %d, want 408", resp.StatusCode)
		}
	}
	waitStat(t, h, "http.ingress_http.downstream_rq_max_duration_reached", 2)
}
