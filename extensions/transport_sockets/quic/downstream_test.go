package quic

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	quicv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/quic/v3"
	quicgo "github.com/quic-go/quic-go"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/listener"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/stats"
)

// connReport is a terminal that answers each stream of a connection with
// what the listener settled for it: whether the connection used 0-RTT and
// the DNS name of the certificate herald presented.
type connReport struct{}

func (connReport) ServeConn(nc *network.Conn) {
	qc := nc.Conn.(quicConn).QUICConn()
	local := "none"
	if nc.LocalCertificate != nil {
		local = nc.LocalCertificate.DNSNames[0]
	}
	for {
		st, err := qc.AcceptStream(context.Background())
		if err != nil {
			return
		}
		fmt.Fprintf(st, "0rtt=%v local=%s", qc.ConnectionState().Used0RTT, local)
		st.Close()
	}
}

// TestDownstreamEarlyDataAndServedCertificate runs a QUIC listener with
// the real transport socket: a full handshake reports the certificate
// herald presented (x-forwarded-client-cert's By); a resumed connection
// sends its first request in 0-RTT and is served before the handshake
// completes when enable_early_data allows it (Envoy's default), and has
// its early data rejected (the request is sent again after the handshake)
// when it does not.
func TestDownstreamEarlyDataAndServedCertificate(t *testing.T) {
	tests := []struct {
		name      string
		earlyData *wrapperspb.BoolValue
		want0RTT  bool
	}{
		{name: "default: 0-RTT accepted", want0RTT: true},
		{name: "enable_early_data false: 0-RTT rejected", earlyData: wrapperspb.Bool(false)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tlsCtx := testContext(t)
			d, err := buildDownstream(&quicv3.QuicDownstreamTransport{DownstreamTlsContext: tlsCtx, EnableEarlyData: tc.earlyData},
				transportsocket.BuildContext{Path: "p"})
			if err != nil {
				t.Fatal(err)
			}
			cfg := &listener.Config{
				Name: "q", Network: "udp", Address: "127.0.0.1:0", QUIC: listener.DefaultQUICOptions(),
				Chains: []*listener.FilterChain{{Name: "q", Transport: d, Terminal: connReport{}}},
			}
			l, err := listener.Start(context.Background(), cfg, stats.NewStore())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.CloseAll)
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM([]byte(tlsCtx.GetCommonTlsContext().GetTlsCertificates()[0].GetCertificateChain().GetInlineString()))
			cache := &notifyingCache{ClientSessionCache: tls.NewLRUClientSessionCache(4), put: make(chan struct{}, 4)}
			clientTLS := &tls.Config{RootCAs: roots, ServerName: "example.com", NextProtos: []string{alpnH3}, ClientSessionCache: cache}
			addr := l.Bound().String()

			ask := func(qc *quicgo.Conn) (string, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				st, err := qc.OpenStreamSync(ctx)
				if err != nil {
					return "", err
				}
				st.Close()
				b, err := io.ReadAll(st)
				return string(b), err
			}

			// A full handshake: herald's certificate is reported.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			first, err := quicgo.DialAddr(ctx, addr, clientTLS, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := ask(first); err != nil || got != "0rtt=false local=example.com" {
				t.Fatalf("first connection: %q, %v; want %q", got, err, "0rtt=false local=example.com")
			}
			// The session ticket arrives after the handshake.
			select {
			case <-cache.put:
			case <-ctx.Done():
				t.Fatal("no session ticket")
			}
			first.CloseWithError(0, "")

			// Resume with 0-RTT: the request stream is opened before the
			// handshake completes.
			early, err := quicgo.DialAddrEarly(ctx, addr, clientTLS, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer early.CloseWithError(0, "")
			got, err := ask(early)
			if !tc.want0RTT {
				// The stream sent in 0-RTT is lost; the client asks again
				// on the connection the handshake completes.
				if !errors.Is(err, quicgo.Err0RTTRejected) {
					t.Fatalf("0-RTT stream: %q, %v; want %v", got, err, quicgo.Err0RTTRejected)
				}
				if early, err = early.NextConnection(ctx); err != nil {
					t.Fatal(err)
				}
				got, err = ask(early)
			}
			if err != nil {
				t.Fatal(err)
			}
			if used := early.ConnectionState().Used0RTT; used != tc.want0RTT {
				t.Errorf("client Used0RTT = %v, want %v", used, tc.want0RTT)
			}
			// A resumed handshake presents no certificate.
			if want := fmt.Sprintf("0rtt=%v local=none", tc.want0RTT); got != want {
				t.Errorf("resumed connection: %q, want %q", got, want)
			}
		})
	}
}

// notifyingCache signals every session ticket the client stores.
type notifyingCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func (c *notifyingCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}
