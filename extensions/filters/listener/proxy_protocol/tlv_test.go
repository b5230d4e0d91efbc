package proxyprotocol

import (
	"encoding/base64"
	"net/netip"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ppv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/proxy_protocol/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// TLV types of the cloud load balancers: AWS NLB's PP2_TYPE_AWS (0xEA, a
// subtype byte 0x01 then the VPC endpoint ID) and Azure's private link
// (0xEE, subtype 0x01 then a 32-bit link ID, little-endian).
const (
	typeAWS      = 0xEA
	typeAzure    = 0xEE
	typeUniqueID = 0x05
)

func rulesOf(rs ...*ppv3.ProxyProtocol_Rule) *ppv3.ProxyProtocol {
	return &ppv3.ProxyProtocol{Rules: rs}
}

func ruleFor(typ uint32, ns, key string, enc ppv3.ProxyProtocol_KeyValuePair_ValueStringEncoding) *ppv3.ProxyProtocol_Rule {
	return &ppv3.ProxyProtocol_Rule{TlvType: typ, OnTlvPresent: &ppv3.ProxyProtocol_KeyValuePair{MetadataNamespace: ns, Key: key, ValueStringEncoding: enc}}
}

// metadataOf flattens the connection's dynamic metadata to ns/key → value.
func metadataOf(c *network.Conn) map[string]string {
	md, _ := c.FilterState(streaminfo.FilterStateDynamicMetadata).(map[string]*structpb.Struct)
	if md == nil {
		return nil
	}
	out := map[string]string{}
	for ns, s := range md {
		for k, v := range s.GetFields() {
			out[ns+"/"+k] = v.GetStringValue()
		}
	}
	return out
}

// TestTLVRules follows Envoy's parseTlvs: a rule's TLV becomes a string in
// dynamic metadata under its namespace (the filter's name by default).
func TestTLVRules(t *testing.T) {
	addr := inet4("192.0.2.1", "198.51.100.2", 1, 2)
	aws := tlv(typeAWS, "\x01vpce-0123456789abcdef")
	azure := tlv(typeAzure, "\x01\x2a\x00\x00\xff")
	tests := []struct {
		name   string
		cfg    *ppv3.ProxyProtocol
		header []byte
		want   map[string]string
	}{
		{name: "AWS VPC endpoint", cfg: rulesOf(ruleFor(typeAWS, "aws", "vpce_id", ppv3.ProxyProtocol_KeyValuePair_UNSPECIFIED)),
			header: v2(0x21, 0x11, addr, tlv(0x01, "h2"), aws), want: map[string]string{"aws/vpce_id": "\x01vpce-0123456789abcdef"}},
		{name: "Azure link ID as base64", cfg: rulesOf(ruleFor(typeAzure, "azure", "link_id", ppv3.ProxyProtocol_KeyValuePair_BASE64)),
			header: v2(0x21, 0x11, addr, azure), want: map[string]string{"azure/link_id": base64.StdEncoding.EncodeToString([]byte("\x01\x2a\x00\x00\xff"))}},
		// SANITIZED_UTF8 (the default) turns each invalid byte into '!'.
		{name: "binary value sanitized", cfg: rulesOf(ruleFor(typeAzure, "azure", "link_id", ppv3.ProxyProtocol_KeyValuePair_SANITIZED_UTF8)),
			header: v2(0x21, 0x11, addr, tlv(typeAzure, "a\xff\xfeb\u00e9")), want: map[string]string{"azure/link_id": "a!!b\u00e9"}},
		{name: "default namespace", cfg: rulesOf(ruleFor(typeUniqueID, "", "uid", 0)),
			header: v2(0x21, 0x21, inet6("2001:db8::1", "2001:db8::2", 5, 6), tlv(typeUniqueID, "abc")),
			want:   map[string]string{"envoy.filters.listener.proxy_protocol/uid": "abc"}},
		{name: "two rules, one namespace", cfg: rulesOf(ruleFor(typeAWS, "lb", "a", 0), ruleFor(typeUniqueID, "lb", "u", 0)),
			header: v2(0x21, 0x11, addr, tlv(typeUniqueID, "id"), aws), want: map[string]string{"lb/a": "\x01vpce-0123456789abcdef", "lb/u": "id"}},
		// Envoy inserts into the Struct's map: the first TLV of a type keeps the key.
		{name: "repeated TLV: the first wins", cfg: rulesOf(ruleFor(typeUniqueID, "lb", "u", 0)),
			header: v2(0x21, 0x11, addr, tlv(typeUniqueID, "first"), tlv(typeUniqueID, "second")), want: map[string]string{"lb/u": "first"}},
		// Envoy keeps the last rule of a type (tlv_types_[type] = ...).
		{name: "two rules for one type: the last wins", cfg: rulesOf(ruleFor(typeUniqueID, "lb", "old", 0), ruleFor(typeUniqueID, "lb", "new", 0)),
			header: v2(0x21, 0x11, addr, tlv(typeUniqueID, "x")), want: map[string]string{"lb/new": "x"}},
		// tlv_type is masked to 8 bits, as Envoy's 0xFF & tlv_type.
		{name: "type masked to 8 bits", cfg: rulesOf(ruleFor(0x100|typeUniqueID, "lb", "u", 0)),
			header: v2(0x21, 0x11, addr, tlv(typeUniqueID, "x")), want: map[string]string{"lb/u": "x"}},
		{name: "empty value", cfg: rulesOf(ruleFor(typeUniqueID, "lb", "u", 0)),
			header: v2(0x21, 0x11, addr, tlv(typeUniqueID, "")), want: map[string]string{"lb/u": ""}},
		{name: "TLV without a rule ignored", cfg: rulesOf(ruleFor(typeAWS, "aws", "vpce_id", 0)),
			header: v2(0x21, 0x11, addr, tlv(typeUniqueID, "x"))},
		// A LOCAL header's TLVs are not parsed.
		{name: "LOCAL ignores TLVs", cfg: rulesOf(ruleFor(typeUniqueID, "lb", "u", 0)), header: v2(0x20, 0x11, addr, tlv(typeUniqueID, "x"))},
		{name: "v1 has none", cfg: rulesOf(ruleFor(typeUniqueID, "lb", "u", 0)), header: []byte("PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFilter(t, tc.cfg)
			c := &network.Conn{Remote: ap("10.0.0.1:5000"), Local: ap("10.0.0.2:80")}
			data := append(append([]byte(nil), tc.header...), "GET / HTTP/1.1\r\n"...)
			st, n := f.OnDataConsume(c, data)
			if st != listenerfilter.Continue || n != len(tc.header) {
				t.Fatalf("OnDataConsume = %v, %d; want Continue, %d", st, n, len(tc.header))
			}
			// The values must not alias the read buffer.
			for i := range data {
				data[i] = 0
			}
			if diff := cmp.Diff(tc.want, metadataOf(c)); diff != "" {
				t.Errorf("dynamic metadata (-want +got):\n%s", diff)
			}
		})
	}
}

// TestPassThroughTLVs: the TLVs pass_through_tlvs selects are kept with
// the header's addresses in the connection's filter state.
func TestPassThroughTLVs(t *testing.T) {
	addr := inet4("192.0.2.1", "198.51.100.2", 1, 2)
	header := v2(0x21, 0x11, addr, tlv(0x01, "h2"), tlv(typeAWS, "\x01vpce-1"), tlv(typeUniqueID, "id"))
	tests := []struct {
		name string
		pt   *corev3.ProxyProtocolPassThroughTLVs
		want *Options
	}{
		{name: "not configured: nothing kept"},
		{name: "INCLUDE_ALL (the default)", pt: &corev3.ProxyProtocolPassThroughTLVs{},
			want: &Options{Src: ap("192.0.2.1:1"), Dst: ap("198.51.100.2:2"), TLVs: []TLV{
				{Type: 0x01, Value: []byte("h2")}, {Type: typeAWS, Value: []byte("\x01vpce-1")}, {Type: typeUniqueID, Value: []byte("id")}}}},
		{name: "INCLUDE", pt: &corev3.ProxyProtocolPassThroughTLVs{MatchType: corev3.ProxyProtocolPassThroughTLVs_INCLUDE, TlvType: []uint32{typeAWS}},
			want: &Options{Src: ap("192.0.2.1:1"), Dst: ap("198.51.100.2:2"), TLVs: []TLV{{Type: typeAWS, Value: []byte("\x01vpce-1")}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, _ := newFilter(t, &ppv3.ProxyProtocol{PassThroughTlvs: tc.pt})
			c := &network.Conn{Remote: ap("10.0.0.1:5000"), Local: ap("10.0.0.2:80")}
			if st, _ := f.OnDataConsume(c, header); st != listenerfilter.Continue {
				t.Fatalf("OnDataConsume = %v, want Continue", st)
			}
			got, _ := c.FilterState(FilterStateKey).(*Options)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("filter state (-want +got):\n%s", diff)
			}
		})
	}
}
