package proxyprotocol

import (
	"encoding/base64"
	"encoding/binary"
	"net/netip"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ppv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/proxy_protocol/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// defaultNamespace is the metadata namespace of a rule without
// metadata_namespace (Envoy: "if this is empty, the filter's namespace will
// be used").
const defaultNamespace = "envoy.filters.listener.proxy_protocol"

// FilterStateKey is the connection filter-state key of the parsed header
// (Envoy's Network::ProxyProtocolFilterState::key()); its value is a
// *Options. Nothing in herald reads it yet: Envoy's upstream
// proxy_protocol transport socket would.
const FilterStateKey = "envoy.network.proxy_protocol_options"

// TLV is one PROXY protocol v2 type-length-value.
type TLV struct {
	Type  uint8
	Value []byte
}

// Options is what the filter keeps of a header in the connection's filter
// state, Envoy's ProxyProtocolData: the addresses it carried (the real
// connection's for v1 UNKNOWN and v2 LOCAL) and the TLVs pass_through_tlvs
// selects, in header order. Immutable once set.
type Options struct {
	Src, Dst netip.AddrPort
	TLVs     []TLV
}

// rule is a built Rule: where a TLV's value goes.
type rule struct {
	namespace, key string
	base64         bool
}

// tlvConfig is the built TLV part of the config. Immutable.
type tlvConfig struct {
	// rules by TLV type; the last rule of a type wins (Envoy's
	// tlv_types_[type] = on_tlv_present).
	rules map[uint8]rule
	// passAll is pass_through_tlvs INCLUDE_ALL; pass are the INCLUDE types.
	passAll bool
	pass    [256]bool
	// keep is true when the header goes to filter state: Envoy sets it
	// for every parsed header; herald only with pass_through_tlvs, since
	// nothing else would read it (it saves an allocation per connection).
	keep bool
}

func buildTLVConfig(cfg *ppv3.ProxyProtocol) tlvConfig {
	var tc tlvConfig
	for _, r := range cfg.GetRules() {
		if tc.rules == nil {
			tc.rules = map[uint8]rule{}
		}
		kv := r.GetOnTlvPresent()
		ns := kv.GetMetadataNamespace()
		if ns == "" {
			ns = defaultNamespace
		}
		// Envoy masks the type to its 8 bits (0xFF & rule.tlv_type()).
		tc.rules[uint8(r.GetTlvType())] = rule{namespace: ns, key: kv.GetKey(),
			base64: kv.GetValueStringEncoding() == ppv3.ProxyProtocol_KeyValuePair_BASE64}
	}
	if pt := cfg.GetPassThroughTlvs(); pt != nil {
		tc.keep = true
		// Envoy: "Default is INCLUDE_ALL".
		switch pt.GetMatchType() {
		case corev3.ProxyProtocolPassThroughTLVs_INCLUDE_ALL:
			tc.passAll = true
		case corev3.ProxyProtocolPassThroughTLVs_INCLUDE:
			for _, t := range pt.GetTlvType() {
				tc.pass[uint8(t)] = true
			}
		}
	}
	return tc
}

// v2TLVs is the TLV block of a parsed v2 PROXY header at the start of
// data (nil for v1 and LOCAL headers, whose TLVs Envoy ignores).
func v2TLVs(data []byte, h header) []byte {
	if h.tlvStart == 0 {
		return nil
	}
	return data[h.tlvStart:h.length]
}

// apply runs the rules over the TLV block b (already checked by parse)
// and records the header in c's filter state, as Envoy's parseTlvs and
// parseBuffer do. Values are copied: b is the listener's read buffer.
// Without rules or pass_through_tlvs it does nothing.
func (tc *tlvConfig) apply(c *network.Conn, h header, b []byte) {
	if tc.rules == nil && !tc.keep {
		return
	}
	var opts *Options
	if tc.keep {
		opts = &Options{Src: c.Remote, Dst: c.Local}
		if !h.keep {
			opts.Src, opts.Dst = h.src, h.dst
		}
	}
	var md map[string]*structpb.Struct
	for len(b) >= 3 {
		typ := b[0]
		n := int(binary.BigEndian.Uint16(b[1:3]))
		val := b[3 : 3+n]
		b = b[3+n:]
		if r, ok := tc.rules[typ]; ok {
			if md == nil {
				md, _ = c.FilterState(streaminfo.FilterStateDynamicMetadata).(map[string]*structpb.Struct)
				if md == nil {
					md = map[string]*structpb.Struct{}
					c.SetFilterState(streaminfo.FilterStateDynamicMetadata, md)
				}
			}
			s := md[r.namespace]
			if s == nil {
				s = &structpb.Struct{Fields: map[string]*structpb.Value{}}
				md[r.namespace] = s
			}
			// Envoy inserts into the Struct's map: a key already set (by
			// an earlier TLV of the header) keeps its first value.
			if _, dup := s.Fields[r.key]; !dup {
				s.Fields[r.key] = structpb.NewStringValue(encodeValue(val, r.base64))
			}
		}
		if opts != nil && (tc.passAll || tc.pass[typ]) {
			opts.TLVs = append(opts.TLVs, TLV{Type: typ, Value: append([]byte(nil), val...)})
		}
	}
	if opts != nil {
		c.SetFilterState(FilterStateKey, opts)
	}
}

// encodeValue is the TLV value as stored: base64 with padding (BASE64), or
// valid UTF-8 with each invalid byte replaced by '!' (SANITIZED_UTF8, the
// default; Envoy's MessageUtil::sanitizeUtf8String).
func encodeValue(v []byte, b64 bool) string {
	if b64 {
		return base64.StdEncoding.EncodeToString(v)
	}
	if utf8.Valid(v) {
		return string(v)
	}
	out := make([]byte, 0, len(v))
	for len(v) > 0 {
		r, size := utf8.DecodeRune(v)
		if r == utf8.RuneError && size == 1 {
			out = append(out, '!')
		} else {
			out = append(out, v[:size]...)
		}
		v = v[size:]
	}
	return string(out)
}
