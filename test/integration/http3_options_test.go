package integration

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	nethttp "net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/herald-proxy/herald/internal/testutil"
)

// HTTP/3 downstream options
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#config-core-v3-http3protocoloptions,
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http3):
// the connection manager's http3_protocol_options, 0-RTT on the QUIC
// transport socket, and WebSocket over HTTP/3 (RFC 9220).

// h3OptionsListener is a QUIC listener whose quic_options allow 5
// concurrent streams; its connection manager enables extended CONNECT and
// WebSocket upgrades and sets quic_protocol_options that, as in Envoy, do
// not apply downstream (the listener's do).
func h3OptionsListener(f *tlsFiles, name string) string {
	return fmt.Sprintf(`  - name: %s
    address: { socket_address: { protocol: UDP, address: 127.0.0.1, port_value: 0 } }
    udp_listener_config:
      quic_options:
        quic_protocol_options: { max_concurrent_streams: 5 }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.quic
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport
          downstream_tls_context:
            common_tls_context:
              tls_certificates:
              - certificate_chain: { filename: %q }
                private_key: { filename: %q }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: %s
          codec_type: HTTP3
          http3_protocol_options:
            allow_extended_connect: true
            quic_protocol_options: { max_concurrent_streams: 100 }
          upgrade_configs:
          - upgrade_type: websocket
          route_config:
            virtual_hosts:
            - name: vh
              domains: ["*"]
              routes:
              - match: { path: "/direct" }
                direct_response: { status: 200, body: { inline_string: "direct answer" } }
              - match: { prefix: "/echo" }
                route: { cluster: echo }
              - match: { prefix: "/ws-off" }
                route:
                  cluster: web
                  upgrade_configs: [{ upgrade_type: websocket, enabled: false }]
              - match: { prefix: "/" }
                route: { cluster: web }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
`, name, f.serverCert, f.serverKey, name)
}

// ticketCache is a client session cache that signals stored tickets.
type ticketCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}

// h3Client dials addr and returns the QUIC connection with an HTTP/3
// client on it; early dials with 0-RTT when the session cache allows.
func h3Client(t *testing.T, ctx context.Context, addr string, conf *tls.Config, early bool) (*quic.Conn, *http3.ClientConn) {
	t.Helper()
	dial := quic.DialAddr
	if early {
		dial = quic.DialAddrEarly
	}
	qc, err := dial(ctx, addr, conf, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0, "") })
	return qc, (&http3.Transport{}).NewClientConn(qc)
}

func h3RoundTrip(t *testing.T, ctx context.Context, cc *http3.ClientConn, method, u, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := nethttp.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cc.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// h3WebSocket opens a WebSocket over HTTP/3 (RFC 9220: an extended
// CONNECT with :protocol websocket) on path.
func h3WebSocket(t *testing.T, ctx context.Context, cc *http3.ClientConn, host, path string) (*http3.RequestStream, *nethttp.Response) {
	t.Helper()
	str, err := cc.OpenRequestStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("https://" + host + path)
	req := (&nethttp.Request{Method: nethttp.MethodConnect, Proto: "websocket", URL: u, Host: host, Header: nethttp.Header{
		// RFC 9220 leaves the key exchange out; the HTTP/1.1 backend
		// behind the H3->H1 transform needs one (see wsH2Key).
		"Sec-Websocket-Version": {"13"}, "Sec-Websocket-Key": {wsH2Key},
	}}).WithContext(ctx)
	if err := str.SendRequestHeader(req); err != nil {
		t.Fatal(err)
	}
	resp, err := str.ReadResponse()
	if err != nil {
		t.Fatal(err)
	}
	return str, resp
}

// TestHTTP3ProtocolOptions runs http3_protocol_options through the binary:
// they are accepted; the listener's max_concurrent_streams is what the
// client may open (the connection manager's is ignored, as Envoy's QUIC
// session reads only connection_keepalive from it); WebSocket over HTTP/3
// is upgraded to the HTTP/1.1 backend and refused where the route disables
// it (403, then the connection closes once idle); a resumed connection's
// requests sent in 0-RTT are answered at once, safe and unsafe methods
// alike, as Envoy's QUIC server does (enable_early_data defaults to true).
func TestHTTP3ProtocolOptions(t *testing.T) {
	t.Parallel()
	f := newTLSFiles(t)
	web := upgradeBackend(t)
	echo := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, b)
	}))
	h := testutil.Start(t, bootstrap([]string{h3OptionsListener(f, "h3")}, staticCluster("web", web), staticCluster("echo", echo)))
	addr := h.ListenerAddr("h3")
	cache := &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(8), put: make(chan struct{}, 8)}
	conf := &tls.Config{RootCAs: f.roots, ServerName: "example.com", NextProtos: []string{http3.NextProtoH3}, ClientSessionCache: cache}

	t.Run("listener max_concurrent_streams", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		qc, _ := h3Client(t, ctx, addr, conf, false)
		var strs []*quic.Stream
		for i := 0; i < 5; i++ {
			st, err := qc.OpenStream()
			if err != nil {
				t.Fatalf("stream %d: %v", i+1, err)
			}
			strs = append(strs, st)
		}
		var limit *quic.StreamLimitReachedError
		if _, err := qc.OpenStream(); !errors.As(err, &limit) {
			t.Errorf("6th stream: %v, want the peer's limit of 5", err)
		}
		for _, st := range strs {
			st.CancelWrite(0)
			st.CancelRead(0)
		}
	})

	t.Run("WebSocket over HTTP/3", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, cc := h3Client(t, ctx, addr, conf, false)
		str, resp := h3WebSocket(t, ctx, cc, "example.com", "/ws")
		if resp.StatusCode != 200 {
			t.Fatalf("status %d, want 200 (the backend's 101)", resp.StatusCode)
		}
		for i := 0; i < 500; i++ {
			op, msg := wsMessage(i)
			if err := wsutil.WriteClientMessage(str, op, msg); err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			got, gotOp, err := wsutil.ReadServerData(str)
			if err != nil {
				t.Fatalf("read %d: %v", i, err)
			}
			if gotOp != op || string(got) != string(msg) {
				t.Fatalf("message %d: got %v %.40q, want %v %.40q", i, gotOp, got, op, msg)
			}
		}
		if err := wsutil.WriteClientMessage(str, ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, "done")); err != nil {
			t.Fatal(err)
		}
		_, _, err := wsutil.ReadServerData(str)
		var closed wsutil.ClosedError
		if !errors.As(err, &closed) || closed.Code != ws.StatusNormalClosure {
			t.Fatalf("after our close frame: %v, want the backend's close frame", err)
		}
		str.Close()
		if rest, err := io.ReadAll(str); err != nil || len(rest) != 0 {
			t.Fatalf("end of the tunnel: %q, %v", rest, err)
		}
		waitStat(t, h, "http.h3.downstream_cx_upgrades_active", 0)
	})

	t.Run("refused upgrade closes the connection once idle", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		qc, cc := h3Client(t, ctx, addr, conf, false)
		_, resp := h3WebSocket(t, ctx, cc, "example.com", "/ws-off")
		if resp.StatusCode != 403 {
			t.Fatalf("status %d, want 403", resp.StatusCode)
		}
		select {
		case <-qc.Context().Done():
		case <-ctx.Done():
			t.Fatal("connection still open")
		}
		waitStat(t, h, "http.h3.downstream_rq_ws_on_non_ws_route", 1)
	})

	t.Run("0-RTT requests answered", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// A first connection gets a session ticket.
		for len(cache.put) > 0 {
			<-cache.put
		}
		first, cc := h3Client(t, ctx, addr, &tls.Config{RootCAs: conf.RootCAs, ServerName: conf.ServerName, NextProtos: conf.NextProtos, ClientSessionCache: cache}, false)
		if code, body := h3RoundTrip(t, ctx, cc, "GET", "https://example.com/direct", ""); code != 200 || body != "direct answer" {
			t.Fatalf("first connection: %d %q", code, body)
		}
		select {
		case <-cache.put:
		case <-ctx.Done():
			t.Fatal("no session ticket")
		}
		first.CloseWithError(0, "")

		// The resumed connection sends its requests before the handshake
		// completes. Envoy answers them as any request, whatever the
		// method: the client chooses what it sends early.
		early, cc := h3Client(t, ctx, addr, conf, true)
		if early.ConnectionState().TLS.HandshakeComplete {
			t.Fatal("handshake already complete: the requests would not be early data")
		}
		if code, body := h3RoundTrip(t, ctx, cc, "GET", "https://example.com/direct", ""); code != 200 || body != "direct answer" {
			t.Errorf("GET in 0-RTT: %d %q", code, body)
		}
		// No 425 Too Early downstream: a POST sent early is proxied.
		if code, body := h3RoundTrip(t, ctx, cc, "POST", "https://example.com/echo/p", "early body"); code != 200 || body != "POST /echo/p early body" {
			t.Errorf("POST in 0-RTT: %d %q", code, body)
		}
		if !early.ConnectionState().Used0RTT {
			t.Error("the server did not accept 0-RTT")
		}
	})
}

// TestHTTP3XFCC: over HTTP/3 the x-forwarded-client-cert element carries
// By, the URI SAN of the certificate herald presented in the QUIC
// handshake, as over TLS on TCP (TestXFCC).
func TestHTTP3XFCC(t *testing.T) {
	t.Parallel()
	f := &tlsFiles{dir: t.TempDir(), roots: x509.NewCertPool()}
	ca, caKey, caPEM, _ := xfccCert(t, &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "xfcc CA"},
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil, nil)
	f.roots.AddCert(ca)
	caPath := f.write(t, "ca.pem", caPEM)
	_, _, srvPEM, srvKey := xfccCert(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "herald"},
		DNSNames: []string{"example.com"}, URIs: spiffe(t, "spiffe://cluster.local/ns/test/sa/herald"),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca, caKey)
	client, _, cliPEM, cliKey := xfccCert(t, &x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "xfcc client"},
		URIs: spiffe(t, "spiffe://cluster.local/ns/test/sa/client"), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}, ca, caKey)
	backend := testutil.HTTPBackend(t, nethttp.HandlerFunc(func(w nethttp.ResponseWriter, r *nethttp.Request) {
		io.WriteString(w, strings.Join(r.Header.Values("X-Forwarded-Client-Cert"), "|"))
	}))
	listener := fmt.Sprintf(`  - name: h3
    address: { socket_address: { protocol: UDP, address: 127.0.0.1, port_value: 0 } }
    udp_listener_config: { quic_options: {} }
    filter_chains:
    - transport_socket:
        name: envoy.transport_sockets.quic
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.quic.v3.QuicDownstreamTransport
          downstream_tls_context:
            common_tls_context:
              tls_certificates:
              - certificate_chain: { filename: %q }
                private_key: { filename: %q }
              validation_context:
                trusted_ca: { filename: %q }
      filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: h3
          codec_type: HTTP3
          forward_client_cert_details: SANITIZE_SET
          set_current_client_cert_details: { uri: true }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
          route_config:
            virtual_hosts:
%s
`, f.write(t, "server.pem", srvPEM), f.write(t, "server.key", srvKey), caPath, catchAllVhost("backend"))
	h := testutil.Start(t, bootstrap([]string{listener}, staticCluster("backend", backend)))

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, cc := h3Client(t, ctx, h.ListenerAddr("h3"), &tls.Config{RootCAs: f.roots, ServerName: "example.com",
		NextProtos: []string{http3.NextProtoH3}, Certificates: []tls.Certificate{mustKeyPair(t, cliPEM, cliKey)}}, false)
	sum := sha256.Sum256(client.Raw)
	want := "By=spiffe://cluster.local/ns/test/sa/herald;Hash=" + hex.EncodeToString(sum[:]) + ";URI=spiffe://cluster.local/ns/test/sa/client"
	if code, body := h3RoundTrip(t, ctx, cc, "GET", "https://example.com/", ""); code != 200 || body != want {
		t.Errorf("backend saw x-forwarded-client-cert %q (status %d), want %q", body, code, want)
	}
}
