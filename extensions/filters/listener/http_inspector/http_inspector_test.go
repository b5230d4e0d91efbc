package httpinspector

import (
	"slices"
	"testing"

	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

func TestOnData(t *testing.T) {
	tests := []struct {
		name      string
		transport string
		data      string
		want      listenerfilter.Status
		wantALPN  []string
		wantStat  string
	}{
		{name: "HTTP/1.1", data: "GET / HTTP/1.1\r\nHost: a\r\n", want: listenerfilter.Continue, wantALPN: []string{"http/1.1"}, wantStat: "http11_found"},
		{name: "HTTP/1.0", data: "GET / HTTP/1.0\r\n", want: listenerfilter.Continue, wantALPN: []string{"http/1.0"}, wantStat: "http10_found"},
		{name: "h2c preface", data: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", want: listenerfilter.Continue, wantALPN: []string{"h2c"}, wantStat: "http2_found"},
		{name: "partial preface", data: "PRI * HTTP/2", want: listenerfilter.NeedMoreData},
		{name: "partial request line", data: "GET /index.ht", want: listenerfilter.NeedMoreData},
		{name: "not HTTP", data: "\x00\x01binary", want: listenerfilter.Continue, wantStat: "http_not_found"},
		{name: "other protocol line", data: "HELO mail.example.com\r\n", want: listenerfilter.Continue, wantStat: "http_not_found"},
		// Envoy inspects plaintext only.
		{name: "TLS skipped", transport: "tls", data: "\x16\x03\x01", want: listenerfilter.Continue},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			store := stats.NewStore()
			f, err := build(&httpinspectorv3.HttpInspector{}, listenerfilter.BuildContext{Path: "f", Stats: store})
			if err != nil {
				t.Fatal(err)
			}
			c := &network.Conn{TransportProtocol: tc.transport}
			if got := f.OnData(c, []byte(tc.data)); got != tc.want {
				t.Fatalf("OnData = %v, want %v", got, tc.want)
			}
			if !slices.Equal(c.RequestedALPN, tc.wantALPN) {
				t.Errorf("RequestedALPN = %q, want %q", c.RequestedALPN, tc.wantALPN)
			}
			if tc.wantStat != "" {
				if got := store.Counter("http_inspector." + tc.wantStat).Value(); got != 1 {
					t.Errorf("http_inspector.%s = %d, want 1", tc.wantStat, got)
				}
			}
		})
	}
}
