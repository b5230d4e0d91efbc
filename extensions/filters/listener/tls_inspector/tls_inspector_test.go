package tlsinspector

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

// recorder is a net.Conn that keeps what is written and fails reads, so a
// crypto/tls client writes its ClientHello and stops.
type recorder struct {
	net.Conn
	buf bytes.Buffer
}

func (r *recorder) Write(p []byte) (int, error)      { return r.buf.Write(p) }
func (r *recorder) Read([]byte) (int, error)         { return 0, errors.New("done") }
func (r *recorder) Close() error                     { return nil }
func (r *recorder) SetDeadline(time.Time) error      { return nil }
func (r *recorder) SetReadDeadline(time.Time) error  { return nil }
func (r *recorder) SetWriteDeadline(time.Time) error { return nil }
func (r *recorder) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (r *recorder) RemoteAddr() net.Addr             { return &net.TCPAddr{} }

func clientHello(t *testing.T, cfg *tls.Config) []byte {
	t.Helper()
	r := &recorder{}
	tls.Client(r, cfg).Handshake()
	if r.buf.Len() == 0 {
		t.Fatal("no ClientHello written")
	}
	return r.buf.Bytes()
}

// fragment splits the first record's handshake payload over two records.
func fragment(hello []byte) []byte {
	n := int(hello[3])<<8 | int(hello[4])
	payload := hello[5 : 5+n]
	half := len(payload) / 2
	var out []byte
	for _, p := range [][]byte{payload[:half], payload[half:]} {
		out = append(out, 0x16, hello[1], hello[2], byte(len(p)>>8), byte(len(p)))
		out = append(out, p...)
	}
	return out
}

func newFilter(t *testing.T, cfg *tlsinspectorv3.TlsInspector) (*Filter, *stats.Store) {
	t.Helper()
	store := stats.NewStore()
	f, err := build(cfg, listenerfilter.BuildContext{Path: "f", Stats: store})
	if err != nil {
		t.Fatal(err)
	}
	return f.(*Filter), store
}

func TestOnData(t *testing.T) {
	full := clientHello(t, &tls.Config{ServerName: "Www.Example.com", NextProtos: []string{"h2", "http/1.1"}})
	bare := clientHello(t, &tls.Config{InsecureSkipVerify: true})
	tests := []struct {
		name          string
		cfg           *tlsinspectorv3.TlsInspector
		data          []byte
		want          listenerfilter.Status
		wantTransport string
		wantSNI       string
		wantALPN      []string
		wantStat      string
	}{
		{name: "SNI and ALPN", data: full, want: listenerfilter.Continue, wantTransport: "tls", wantSNI: "www.example.com",
			wantALPN: []string{"h2", "http/1.1"}, wantStat: "sni_found"},
		{name: "no SNI, no ALPN", data: bare, want: listenerfilter.Continue, wantTransport: "tls", wantStat: "sni_not_found"},
		{name: "fragmented over two records", data: fragment(full), want: listenerfilter.Continue, wantTransport: "tls", wantSNI: "www.example.com",
			wantALPN: []string{"h2", "http/1.1"}, wantStat: "alpn_found"},
		{name: "partial", data: full[:20], want: listenerfilter.NeedMoreData},
		{name: "nothing yet", data: nil, want: listenerfilter.NeedMoreData},
		{name: "plaintext", data: []byte("GET / HTTP/1.1\r\n"), want: listenerfilter.Continue, wantStat: "tls_not_found"},
		{name: "plaintext closed when asked", cfg: &tlsinspectorv3.TlsInspector{CloseConnectionOnClientHelloParsingErrors: true},
			data: []byte("GET / HTTP/1.1\r\n"), want: listenerfilter.Close, wantStat: "tls_not_found"},
		{name: "too large", cfg: &tlsinspectorv3.TlsInspector{MaxClientHelloSize: wrapperspb.UInt32(64)}, data: full[:64],
			want: listenerfilter.Continue, wantStat: "client_hello_too_large"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			if cfg == nil {
				cfg = &tlsinspectorv3.TlsInspector{}
			}
			f, store := newFilter(t, cfg)
			c := &network.Conn{}
			if got := f.OnData(c, tc.data); got != tc.want {
				t.Fatalf("OnData = %v, want %v", got, tc.want)
			}
			if c.TransportProtocol != tc.wantTransport || c.ServerName != tc.wantSNI || !slices.Equal(c.RequestedALPN, tc.wantALPN) {
				t.Errorf("conn = transport %q, SNI %q, ALPN %q; want %q, %q, %q", c.TransportProtocol, c.ServerName, c.RequestedALPN,
					tc.wantTransport, tc.wantSNI, tc.wantALPN)
			}
			if tc.wantStat != "" {
				if got := store.Counter("tls_inspector." + tc.wantStat).Value(); got != 1 {
					t.Errorf("tls_inspector.%s = %d, want 1", tc.wantStat, got)
				}
			}
		})
	}
}

func TestBuildRefusesJA4(t *testing.T) {
	_, err := build(&tlsinspectorv3.TlsInspector{EnableJa4Fingerprinting: wrapperspb.Bool(true)}, listenerfilter.BuildContext{Path: "f", Stats: stats.NewStore()})
	if err == nil || err.Error() != "f.enable_ja4_fingerprinting: not supported by herald yet" {
		t.Fatalf("err = %v", err)
	}
}

// TestOnDataJA3: enable_ja3_fingerprinting records the fingerprint on the
// connection: the same for a fragmented ClientHello, different for a
// client with other cipher suites, absent when disabled.
func TestOnDataJA3(t *testing.T) {
	modern := clientHello(t, &tls.Config{ServerName: "a.example.com"})
	legacy := clientHello(t, &tls.Config{ServerName: "a.example.com", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}})
	run := func(enabled bool, hello []byte) string {
		f, _ := newFilter(t, &tlsinspectorv3.TlsInspector{EnableJa3Fingerprinting: wrapperspb.Bool(enabled)})
		c := network.NewConn(context.Background(), &recorder{}, nil)
		if st := f.OnData(c, hello); st != listenerfilter.Continue {
			t.Fatalf("OnData = %v, want Continue", st)
		}
		return c.JA3Hash
	}
	got := run(true, modern)
	if len(got) != 32 || strings.Trim(got, "0123456789abcdef") != "" {
		t.Fatalf("JA3Hash = %q, want 32 lowercase hex digits", got)
	}
	if again := run(true, fragment(modern)); again != got {
		t.Errorf("fragmented ClientHello: JA3Hash = %s, want %s", again, got)
	}
	if other := run(true, legacy); other == got {
		t.Errorf("a client with other cipher suites has the same JA3Hash %s", got)
	}
	if off := run(false, modern); off != "" {
		t.Errorf("disabled: JA3Hash = %q, want none", off)
	}
}

// FuzzParseClientHello: peer bytes never panic the parser.
func FuzzParseClientHello(f *testing.F) {
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parseClientHello(data)
		ja3(data)
	})
}
