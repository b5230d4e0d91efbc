package integration

import (
	"io"
	nethttp "net/http"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil"
)

// TestHTTP1Trailers: Envoy's HTTP/1 codec drops trailers unless
// http_protocol_options.enable_trailers is set.
func TestHTTP1Trailers(t *testing.T) {
	t.Parallel()
	backend := testutil.H2CBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		w.Header().Set("trailer", "x-checksum")
		io.WriteString(w, "body")
		// Flushing before the end keeps the response without
		// content-length, so herald frames it chunked (trailers need that).
		w.(nethttp.Flusher).Flush()
		w.Header().Set("x-checksum", "abc")
	}))
	cluster := staticCluster("h2", backend) + `    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
`
	tests := []struct {
		name        string
		hcmExtra    string
		wantTrailer string
	}{
		{name: "dropped by default", wantTrailer: ""},
		{name: "forwarded with enable_trailers", hcmExtra: "          http_protocol_options: { enable_trailers: true }\n", wantTrailer: "abc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := testutil.Start(t, catchAllConfig("l", "h2", cluster, tc.hcmExtra))
			resp, err := newClient().Get("http://" + h.ListenerAddr("l") + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "body" {
				t.Fatalf("body = %q", body)
			}
			if got := resp.Trailer.Get("x-checksum"); got != tc.wantTrailer {
				t.Fatalf("trailer x-checksum = %q, want %q", got, tc.wantTrailer)
			}
		})
	}
}
