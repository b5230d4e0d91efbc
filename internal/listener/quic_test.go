package listener

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/testutil"
)

// quicSocket is a QUIC transport socket with a fixed TLS config; its
// Handshake reports the SNI as the real one does.
type quicSocket struct{ conf *tls.Config }

func (s *quicSocket) QUICTLSConfig() *tls.Config { return s.conf }
func (s *quicSocket) ForListener(stats.Scope) transportsocket.DownstreamSocket {
	return s
}
func (s *quicSocket) Handshake(c net.Conn, _ time.Time) (net.Conn, transportsocket.Negotiated, error) {
	cs := c.(*quicConn).QUICConn().ConnectionState().TLS
	return c, transportsocket.Negotiated{ServerName: cs.ServerName, ALPN: cs.NegotiatedProtocol}, nil
}

// streamEcho is a terminal that answers each QUIC stream with what the
// listener told it about the connection, until the connection closes.
type streamEcho struct{}

func (streamEcho) ServeConn(nc *network.Conn) {
	qc := nc.Conn.(*quicConn).QUICConn()
	for {
		st, err := qc.AcceptStream(context.Background())
		if err != nil {
			return
		}
		fmt.Fprintf(st, "%s %s %s %v", nc.TransportProtocol, nc.ServerName, nc.ALPN, nc.TLS)
		st.Close()
	}
}

func selfSignedTLS(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), DNSNames: []string{"example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS13, NextProtos: []string{"h3"}}, pool
}

func TestQUICListener(t *testing.T) {
	conf, roots := selfSignedTLS(t)
	store := stats.NewStore()
	cfg := &Config{
		Name: "q", Network: "udp", Address: "127.0.0.1:0",
		QUIC:   &QUICOptions{IdleTimeout: 5 * time.Second, HandshakeTimeout: 5 * time.Second, MaxConcurrentStreams: 10, StreamWindow: 1 << 20, ConnectionWindow: 2 << 20},
		Chains: []*FilterChain{{Name: "q", Transport: &quicSocket{conf: conf}, Terminal: streamEcho{}}},
	}
	l, err := Start(context.Background(), cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.CloseAll)
	if got := l.ln.Addr().Network(); got != "udp" {
		t.Fatalf("bound %s, want udp", got)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, l.Bound().String(), &tls.Config{RootCAs: roots, ServerName: "Example.COM", NextProtos: []string{"h3"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	got, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	// The chain sees a QUIC connection: transport protocol "quic", the SNI
	// lowercased, ALPN h3, secured.
	if want := "quic example.com h3 true"; string(got) != want {
		t.Fatalf("terminal saw %q, want %q", got, want)
	}
	if v := store.Scope(l.statPrefix).Counter("downstream_cx_total").Value(); v != 1 {
		t.Errorf("downstream_cx_total = %d, want 1", v)
	}

	// Remove: no new connections, the open one drains; once it ends the
	// UDP socket is released.
	done := l.Remove(time.Second)
	testutil.Eventually(t, 5*time.Second, func() error {
		select {
		case <-done:
			return nil
		default:
			return fmt.Errorf("%d connections still open", l.ActiveConnections())
		}
	})
	testutil.Eventually(t, 5*time.Second, func() error {
		pc, err := net.ListenPacket("udp4", l.Bound().String())
		if err != nil {
			return err
		}
		return pc.Close()
	})
	qc.CloseWithError(0, "")
}

// TestQUICConfigAcceptsEarlyData: every QUIC connection may use 0-RTT at
// the QUIC layer; the chain's TLS config decides per session, as Envoy's
// enable_early_data (end to end in extensions/transport_sockets/quic).
func TestQUICConfigAcceptsEarlyData(t *testing.T) {
	tests := []struct {
		name string
		opts *QUICOptions
	}{
		{name: "defaults", opts: DefaultQUICOptions()},
		{name: "configured", opts: &QUICOptions{IdleTimeout: time.Second, MaxConcurrentStreams: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !tc.opts.quicConfig().Allow0RTT {
				t.Error("Allow0RTT = false, want true")
			}
		})
	}
}
