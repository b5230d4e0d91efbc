package listener

import (
	"context"
	"net"
	"testing"

	"github.com/herald-proxy/herald/internal/stats"
)

func TestSameSocket(t *testing.T) {
	tests := []struct {
		name string
		a, b Config
		want bool
	}{
		{name: "same address tcp", a: Config{Network: "tcp", Address: "127.0.0.1:80"}, b: Config{Network: "tcp", Address: "127.0.0.1:80"}, want: true},
		{name: "empty network is tcp", a: Config{Address: "127.0.0.1:80"}, b: Config{Network: "tcp", Address: "127.0.0.1:80"}, want: true},
		{name: "same address udp", a: Config{Network: "udp", Address: "127.0.0.1:80"}, b: Config{Network: "udp", Address: "127.0.0.1:80"}, want: true},
		{name: "tcp to udp", a: Config{Network: "tcp", Address: "127.0.0.1:80"}, b: Config{Network: "udp", Address: "127.0.0.1:80"}, want: false},
		{name: "udp to tcp", a: Config{Network: "udp", Address: "127.0.0.1:80"}, b: Config{Address: "127.0.0.1:80"}, want: false},
		{name: "address changed", a: Config{Network: "tcp", Address: "127.0.0.1:80"}, b: Config{Network: "tcp", Address: "127.0.0.1:81"}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.a.SameSocket(&tc.b); got != tc.want {
				t.Errorf("SameSocket = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLocalAddrProtocol(t *testing.T) {
	conf, _ := selfSignedTLS(t)
	tests := []struct {
		name        string
		cfg         *Config
		wantNetwork string
	}{
		{name: "tcp", cfg: configNamed("t", false), wantNetwork: "tcp"},
		{name: "quic", cfg: &Config{
			Name: "q", Network: "udp", Address: "127.0.0.1:0",
			Chains: []*FilterChain{{Name: "q", Transport: &quicSocket{conf: conf}, Terminal: streamEcho{}}},
		}, wantNetwork: "udp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Bind(context.Background(), tc.cfg, stats.NewStore())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Close)
			if got := l.Network(); got != tc.wantNetwork {
				t.Errorf("Network() = %q, want %q", got, tc.wantNetwork)
			}
			a := l.LocalAddr()
			if a.Network() != tc.wantNetwork || a.String() != l.Bound().String() {
				t.Errorf("LocalAddr() = %s %s, want %s %s", a.Network(), a, tc.wantNetwork, l.Bound())
			}
			switch tc.wantNetwork {
			case "udp":
				if _, ok := a.(*net.UDPAddr); !ok {
					t.Errorf("LocalAddr() is %T, want *net.UDPAddr", a)
				}
			default:
				if _, ok := a.(*net.TCPAddr); !ok {
					t.Errorf("LocalAddr() is %T, want *net.TCPAddr", a)
				}
			}
		})
	}
}

// A TCP socket must never take a QUIC config in place: Update refuses it
// (the server binds a new socket instead, see Config.SameSocket).
func TestUpdateRefusesOtherProtocol(t *testing.T) {
	l, err := Start(context.Background(), configNamed("web", false), stats.NewStore())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.CloseAll)
	defer func() {
		if recover() == nil {
			t.Fatal("Update of a TCP listener with a udp config did not panic")
		}
		if got := l.Config().Network; got != "tcp" {
			t.Errorf("config network after refused Update = %q, want tcp", got)
		}
	}()
	cfg := configNamed("web", false)
	cfg.Network = "udp"
	l.Update(cfg, 0)
}
