package proxyprotocol

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ppv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/proxy_protocol/v3"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

// v2 builds a v2 header: ver_cmd, fam, address block and TLVs.
func v2(verCmd, fam byte, addr []byte, tlvs ...[]byte) []byte {
	b := []byte(v2Sig)
	body := append([]byte(nil), addr...)
	for _, t := range tlvs {
		body = append(body, t...)
	}
	b = append(b, verCmd, fam, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
	return append(b, body...)
}

func tlv(typ byte, val string) []byte {
	return append([]byte{typ, byte(len(val) >> 8), byte(len(val))}, val...)
}

func inet4(src, dst string, sp, dp uint16) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sp), dp)
}

func inet6(src, dst string, sp, dp uint16) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	b := append(s[:], d[:]...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, sp), dp)
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestParse(t *testing.T) {
	v2ip4 := v2(0x21, 0x11, inet4("192.0.2.1", "198.51.100.2", 40000, 443))
	tests := []struct {
		name    string
		data    []byte
		want    header
		wantErr error
	}{
		{name: "v1 TCP4", data: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\nGET"),
			want: header{version: versionV1, src: ap("192.0.2.1:40000"), dst: ap("198.51.100.2:443"), length: 45}},
		{name: "v1 TCP6", data: []byte("PROXY TCP6 2001:db8::1 2001:db8::2 1 2\r\n"),
			want: header{version: versionV1, src: ap("[2001:db8::1]:1"), dst: ap("[2001:db8::2]:2"), length: 40}},
		{name: "v1 UNKNOWN", data: []byte("PROXY UNKNOWN\r\n"), want: header{version: versionV1, keep: true, length: 15}},
		{name: "v1 UNKNOWN with addresses", data: []byte("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), want: header{version: versionV1, keep: true, length: 35}},
		{name: "v1 incomplete", data: []byte("PROXY TCP4 192.0.2.1"), wantErr: errIncomplete},
		{name: "v1 short prefix", data: []byte("PRO"), wantErr: errIncomplete},
		{name: "empty", data: nil, wantErr: errIncomplete},
		{name: "v1 TCP4 with v6 address", data: []byte("PROXY TCP4 ::1 ::2 1 2\r\n"), want: header{version: versionV1}, wantErr: errMalformed},
		{name: "v1 bad port", data: []byte("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), want: header{version: versionV1}, wantErr: errMalformed},
		{name: "v1 double space", data: []byte("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), want: header{version: versionV1}, wantErr: errMalformed},
		{name: "v1 unknown protocol", data: []byte("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), want: header{version: versionV1}, wantErr: errMalformed},
		{name: "v1 any address", data: []byte("PROXY TCP4 0.0.0.0 5.6.7.8 1 2\r\n"), want: header{version: versionV1}, wantErr: errMalformed},
		{name: "v1 oversized", data: []byte("PROXY TCP6 " + strings.Repeat("a", 100) + "\r\n"), want: header{version: versionV1}, wantErr: errMalformed},
		{name: "v1 no CRLF within 108", data: []byte("PROXY " + strings.Repeat("a", 110)), wantErr: errMalformed},
		{name: "bad signature", data: []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), wantErr: errMalformed},
		{name: "v2 PROXY IPv4", data: append(append([]byte(nil), v2ip4...), "GET"...),
			want: header{version: versionV2, src: ap("192.0.2.1:40000"), dst: ap("198.51.100.2:443"), length: 28, tlvStart: 28}},
		{name: "v2 PROXY IPv6 with TLVs skipped", data: v2(0x21, 0x21, inet6("2001:db8::1", "2001:db8::2", 5, 6), tlv(0x01, "h2"), tlv(0xEA, "")),
			want: header{version: versionV2, src: ap("[2001:db8::1]:5"), dst: ap("[2001:db8::2]:6"), length: 16 + 36 + 5 + 3, tlvStart: 16 + 36}},
		{name: "v2 UDP (DGRAM) accepted", data: v2(0x21, 0x12, inet4("192.0.2.1", "198.51.100.2", 1, 2)),
			want: header{version: versionV2, src: ap("192.0.2.1:1"), dst: ap("198.51.100.2:2"), length: 28, tlvStart: 28}},
		{name: "v2 LOCAL keeps addresses", data: v2(0x20, 0x00, nil), want: header{version: versionV2, keep: true, length: 16}},
		{name: "v2 LOCAL skips any body", data: v2(0x20, 0x11, inet4("192.0.2.1", "198.51.100.2", 1, 2)), want: header{version: versionV2, keep: true, length: 28}},
		{name: "v2 truncated address", data: v2ip4[:20], want: header{version: versionV2, length: 28}, wantErr: errIncomplete},
		{name: "v2 signature prefix", data: v2ip4[:10], wantErr: errIncomplete},
		{name: "v2 truncated TLV", data: v2(0x21, 0x11, inet4("192.0.2.1", "198.51.100.2", 1, 2), []byte{0x01, 0x00, 0x05, 'a'}),
			want: header{version: versionV2, src: ap("192.0.2.1:1"), dst: ap("198.51.100.2:2"), length: 32}, wantErr: errMalformed},
		{name: "v2 TLV without length", data: v2(0x21, 0x11, inet4("192.0.2.1", "198.51.100.2", 1, 2), []byte{0x01, 0x00}),
			want: header{version: versionV2, src: ap("192.0.2.1:1"), dst: ap("198.51.100.2:2"), length: 30}, wantErr: errMalformed},
		{name: "v2 bad version", data: v2(0x11, 0x11, inet4("192.0.2.1", "198.51.100.2", 1, 2)), want: header{version: versionV2}, wantErr: errMalformed},
		{name: "v2 bad command", data: v2(0x22, 0x11, inet4("192.0.2.1", "198.51.100.2", 1, 2)), want: header{version: versionV2, length: 28}, wantErr: errMalformed},
		{name: "v2 UNSPEC family closes", data: v2(0x21, 0x00, nil), want: header{version: versionV2, length: 16}, wantErr: errMalformed},
		{name: "v2 UNIX family closes", data: v2(0x21, 0x31, make([]byte, 216)), want: header{version: versionV2, length: 232}, wantErr: errMalformed},
		{name: "v2 length shorter than address", data: v2(0x21, 0x21, inet4("192.0.2.1", "198.51.100.2", 1, 2)), want: header{version: versionV2, length: 28}, wantErr: errMalformed},
		{name: "v2 multicast source", data: v2(0x21, 0x11, inet4("224.0.0.1", "198.51.100.2", 1, 2)),
			want: header{version: versionV2, src: ap("224.0.0.1:1"), dst: ap("198.51.100.2:2"), length: 28}, wantErr: errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse(tt.data)
			if err != tt.wantErr {
				t.Fatalf("parse() error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				// On error only the version (which picks the stats) counts.
				if got.version != tt.want.version {
					t.Errorf("parse() version = %d, want %d", got.version, tt.want.version)
				}
				return
			}
			if got != tt.want {
				t.Errorf("parse() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func newFilter(t *testing.T, cfg *ppv3.ProxyProtocol) (*Filter, *stats.Store) {
	t.Helper()
	store := stats.NewStore()
	f, err := build(cfg, listenerfilter.BuildContext{Path: "f", Stats: store})
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return f.(*Filter), store
}

func TestOnDataConsume(t *testing.T) {
	real := ap("10.0.0.1:5000")
	local := ap("10.0.0.2:8080")
	tests := []struct {
		name       string
		cfg        *ppv3.ProxyProtocol
		data       string
		wantStatus listenerfilter.Status
		wantN      int
		wantRemote netip.AddrPort
		wantLocal  netip.AddrPort
		wantStats  map[string]uint64
	}{
		{name: "v1 sets addresses", cfg: &ppv3.ProxyProtocol{}, data: "PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\nGET / HTTP/1.1\r\n",
			wantStatus: listenerfilter.Continue, wantN: 45, wantRemote: ap("192.0.2.1:40000"), wantLocal: ap("198.51.100.2:443"),
			wantStats: map[string]uint64{"proxy_proto.versions.v1.found": 1}},
		{name: "v2 LOCAL keeps addresses", cfg: &ppv3.ProxyProtocol{StatPrefix: "lb"}, data: string(v2(0x20, 0, nil)) + "x",
			wantStatus: listenerfilter.Continue, wantN: 16, wantRemote: real, wantLocal: local,
			wantStats: map[string]uint64{"proxy_proto.lb.versions.v2.found": 1}},
		{name: "malformed closes", cfg: &ppv3.ProxyProtocol{}, data: "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
			wantStatus: listenerfilter.Close, wantRemote: real, wantLocal: local,
			wantStats: map[string]uint64{"proxy_proto.not_found_disallowed": 1, "downstream_cx_proxy_proto_error": 1}},
		{name: "v1 error", cfg: &ppv3.ProxyProtocol{}, data: "PROXY TCP4 1.2.3.4\r\n",
			wantStatus: listenerfilter.Close, wantRemote: real, wantLocal: local,
			wantStats: map[string]uint64{"proxy_proto.versions.v1.error": 1, "downstream_cx_proxy_proto_error": 1}},
		{name: "without header allowed", cfg: &ppv3.ProxyProtocol{AllowRequestsWithoutProxyProtocol: true}, data: "GET / HTTP/1.1\r\n",
			wantStatus: listenerfilter.Continue, wantN: 0, wantRemote: real, wantLocal: local,
			wantStats: map[string]uint64{"proxy_proto.not_found_allowed": 1}},
		{name: "allowed but header present", cfg: &ppv3.ProxyProtocol{AllowRequestsWithoutProxyProtocol: true}, data: "PROXY TCP6 ::1 ::2 1 2\r\n",
			wantStatus: listenerfilter.Continue, wantN: 24, wantRemote: ap("[::1]:1"), wantLocal: ap("[::2]:2"),
			wantStats: map[string]uint64{"proxy_proto.versions.v1.found": 1}},
		{name: "allowed, v1 disallowed: PROXY line passes through", cfg: &ppv3.ProxyProtocol{AllowRequestsWithoutProxyProtocol: true,
			DisallowedVersions: []corev3.ProxyProtocolConfig_Version{corev3.ProxyProtocolConfig_V1}}, data: "PROXY TCP6 ::1 ::2 1 2\r\n",
			wantStatus: listenerfilter.Continue, wantRemote: real, wantLocal: local,
			wantStats: map[string]uint64{"proxy_proto.not_found_allowed": 1}},
		{name: "v2 disallowed closes", cfg: &ppv3.ProxyProtocol{DisallowedVersions: []corev3.ProxyProtocolConfig_Version{corev3.ProxyProtocolConfig_V2}},
			data: string(v2(0x20, 0, nil)), wantStatus: listenerfilter.Close, wantRemote: real, wantLocal: local,
			wantStats: map[string]uint64{"proxy_proto.versions.v2.found": 1, "proxy_proto.versions.v2.disallowed": 1, "downstream_cx_proxy_proto_error": 0}},
		{name: "need more", cfg: &ppv3.ProxyProtocol{}, data: "PROXY TCP4 1.2",
			wantStatus: listenerfilter.NeedMoreData, wantRemote: real, wantLocal: local,
			wantStats: map[string]uint64{"proxy_proto.versions.v1.found": 0, "downstream_cx_proxy_proto_error": 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, store := newFilter(t, tt.cfg)
			c := &network.Conn{Remote: real, Local: local, DirectRemote: real}
			st, n := f.OnDataConsume(c, []byte(tt.data))
			if st != tt.wantStatus || n != tt.wantN {
				t.Fatalf("OnDataConsume() = %v, %d; want %v, %d", st, n, tt.wantStatus, tt.wantN)
			}
			if c.Remote != tt.wantRemote || c.Local != tt.wantLocal || c.DirectRemote != real {
				t.Errorf("addresses remote=%v local=%v direct=%v; want %v %v %v", c.Remote, c.Local, c.DirectRemote, tt.wantRemote, tt.wantLocal, real)
			}
			for name, want := range tt.wantStats {
				if got := store.Counter(name).Value(); got != want {
					t.Errorf("%s = %d, want %d", name, got, want)
				}
			}
		})
	}
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *ppv3.ProxyProtocol
		wantErr string
	}{
		{name: "all versions disallowed", cfg: &ppv3.ProxyProtocol{DisallowedVersions: []corev3.ProxyProtocolConfig_Version{corev3.ProxyProtocolConfig_V1, corev3.ProxyProtocolConfig_V2}},
			wantErr: "f.disallowed_versions: Proxy Protocol filter is misconfigured: all proxy protocol versions are disallowed."},
		{name: "rules", cfg: &ppv3.ProxyProtocol{Rules: []*ppv3.ProxyProtocol_Rule{{TlvType: 1, OnTlvPresent: &ppv3.ProxyProtocol_KeyValuePair{Key: "k"}}}}},
		{name: "pass_through_tlvs", cfg: &ppv3.ProxyProtocol{PassThroughTlvs: &corev3.ProxyProtocolPassThroughTLVs{}}},
		{name: "tlv_location FILTER_STATE refused", cfg: &ppv3.ProxyProtocol{TlvLocation: ppv3.ProxyProtocol_FILTER_STATE}, wantErr: "f.tlv_location: not supported by herald yet"},
		{name: "plain", cfg: &ppv3.ProxyProtocol{StatPrefix: "x", AllowRequestsWithoutProxyProtocol: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(tt.cfg, listenerfilter.BuildContext{Path: "f", Stats: stats.NewStore()})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("build: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("build error = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2(0x21, 0x21, inet6("2001:db8::1", "2001:db8::2", 5, 6), tlv(1, "h2")))
	f.Add(v2(0x20, 0, nil))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := parse(data)
		if err == nil {
			if h.length <= 0 || h.length > len(data) || h.length > maxV2Len {
				t.Fatalf("length %d out of range for %d bytes", h.length, len(data))
			}
			if !h.keep && (!h.src.IsValid() || !h.dst.IsValid()) {
				t.Fatalf("addresses not set: %+v", h)
			}
			// A prefix of a complete header is never accepted.
			if _, err2 := parse(data[:h.length-1]); err2 == nil {
				t.Fatalf("prefix of %q parsed", data[:h.length])
			}
		}
	})
}

// TestOnDataConsumeIncremental feeds every prefix of a header followed by
// request bytes, as the listener does while reading: NeedMoreData until
// the header is complete, then Continue consuming exactly the header.
func TestOnDataConsumeIncremental(t *testing.T) {
	tests := []struct {
		name   string
		header []byte
		want   netip.AddrPort
	}{
		{name: "v1", header: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 40000 443\r\n"), want: ap("192.0.2.1:40000")},
		{name: "v1 UNKNOWN", header: []byte("PROXY UNKNOWN\r\n"), want: ap("10.0.0.1:5000")},
		{name: "v2 with TLVs", header: v2(0x21, 0x21, inet6("2001:db8::1", "2001:db8::2", 5, 6), tlv(0x01, "h2"), tlv(0x05, "unique-id")), want: ap("[2001:db8::1]:5")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newFilter(t, &ppv3.ProxyProtocol{})
			data := append(append([]byte(nil), tt.header...), "GET / HTTP/1.1\r\n"...)
			for i := 0; i < len(tt.header); i++ {
				c := &network.Conn{Remote: ap("10.0.0.1:5000")}
				if st, _ := f.OnDataConsume(c, data[:i]); st != listenerfilter.NeedMoreData {
					t.Fatalf("after %d of %d header bytes: %v, want NeedMoreData", i, len(tt.header), st)
				}
			}
			for i := len(tt.header); i <= len(data); i++ {
				c := &network.Conn{Remote: ap("10.0.0.1:5000")}
				st, n := f.OnDataConsume(c, data[:i])
				if st != listenerfilter.Continue || n != len(tt.header) || c.Remote != tt.want {
					t.Fatalf("with %d bytes: %v, %d, remote %v; want Continue, %d, %v", i, st, n, c.Remote, len(tt.header), tt.want)
				}
			}
		})
	}
}
