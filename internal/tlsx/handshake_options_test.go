package tlsx

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/herald-proxy/herald/internal/stats"
)

func TestHandshakeOptions(t *testing.T) {
	p := newPKI(t)
	wild := newCert(t, certOpts{cn: "wild", dns: []string{"*.example.org"}, ips: []net.IP{net.IPv4(127, 0, 0, 1)}, parent: p.ca})
	tests := []struct {
		name     string
		sni      string // the context's sni
		opts     *HandshakeOptions
		cert     *testCert
		wantSNI  string
		wantErr  string
		wantStat string
	}{
		{name: "no options keep the context sni", sni: "ctx.example.com", cert: p.server, wantSNI: "ctx.example.com", wantStat: "handshake"},
		{name: "server name replaces sni", sni: "ctx.example.com", opts: &HandshakeOptions{ServerName: "a.example.com"}, cert: p.server,
			wantSNI: "a.example.com", wantStat: "handshake"},
		{name: "verify name matches", opts: &HandshakeOptions{ServerName: "example.com", VerifyName: "example.com"}, cert: p.server,
			wantSNI: "example.com", wantStat: "handshake"},
		{name: "verify name matches a wildcard SAN", opts: &HandshakeOptions{VerifyName: "api.example.org"}, cert: wild, wantStat: "handshake"},
		{name: "verify name matches an IP SAN", opts: &HandshakeOptions{VerifyName: "127.0.0.1"}, cert: wild, wantStat: "handshake"},
		{name: "verify name mismatch", opts: &HandshakeOptions{ServerName: "b.example.com", VerifyName: "b.example.com"}, cert: p.server,
			wantErr: "subject alternative names", wantStat: "fail_verify_san"},
		{name: "wildcard covers one label only", opts: &HandshakeOptions{VerifyName: "a.b.example.org"}, cert: wild,
			wantErr: "subject alternative names", wantStat: "fail_verify_san"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl, err := BuildClient(&tlsv3.UpstreamTlsContext{Sni: tc.sni}, "ctx", nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			seen := make(chan string, 1)
			go func() {
				s := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{keyPair(t, tc.cert)}})
				s.Handshake()
				seen <- s.ConnectionState().ServerName
				b.Close()
			}()
			store := stats.NewStore()
			st := NewStats(store.Scope("cluster.c."))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if tc.opts != nil {
				ctx = WithHandshakeOptions(ctx, tc.opts)
			}
			_, err = cl.Handshake(ctx, a, st)
			a.Close()
			sni := <-seen
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if sni != tc.wantSNI {
					t.Errorf("server saw SNI %q, want %q", sni, tc.wantSNI)
				}
			}
			if got := store.Counter("cluster.c.ssl." + tc.wantStat).Value(); got != 1 {
				t.Errorf("ssl.%s = %d, want 1", tc.wantStat, got)
			}
			if got := cl.Config().ServerName; got != tc.sni {
				t.Errorf("shared config ServerName = %q after the handshake, want %q (options must not leak)", got, tc.sni)
			}
		})
	}
}
