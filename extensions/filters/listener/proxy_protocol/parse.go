package proxyprotocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"
	"strings"
)

// Wire constants of https://www.haproxy.org/download/1.9/doc/proxy-protocol.txt.
const (
	v2SigLen    = 12
	v2HeaderLen = 16 // signature, ver_cmd, fam, len
	// maxV1Len is Envoy's MAX_PROXY_PROTO_LEN_V1 (108: the spec's 107 plus
	// one); a v1 line without CRLF by then is an error.
	maxV1Len = 108
	// maxV2Len is the largest v2 header: the 16-byte prefix plus a 16-bit
	// length.
	maxV2Len = v2HeaderLen + 0xffff

	v2CmdLocal     = 0x0
	v2CmdProxy     = 0x1
	v2FamInet      = 0x1
	v2FamInet6     = 0x2
	v2TransStream  = 0x1
	v2TransDgram   = 0x2
	v2AddrLenInet  = 12
	v2AddrLenInet6 = 36
	versionNone    = 0
	versionV1      = 1
	versionV2      = 2
	v1SigLen       = 6
	v1Sig          = "PROXY "
	v2Sig          = "\r\n\r\n\x00\r\nQUIT\n"
)

var (
	// errIncomplete: the header may be valid but more bytes are needed.
	errIncomplete = errors.New("proxy protocol header incomplete")
	errMalformed  = errors.New("malformed proxy protocol header")
)

// header is a parsed PROXY protocol header.
type header struct {
	// version is versionV1 or versionV2 once the data is known to be that
	// version (also when err is not nil), versionNone before.
	version int
	// keep is true when the real connection's addresses stay: v1 UNKNOWN,
	// v2 LOCAL.
	keep     bool
	src, dst netip.AddrPort
	// length is the whole header's length, TLVs included.
	length int
	// tlvStart is where the TLV block starts in the data (it ends at
	// length); 0 for headers whose TLVs Envoy ignores (v1, v2 LOCAL).
	tlvStart int
}

// prefixOf reports whether data is a prefix of sig or starts with sig.
func prefixOf(data []byte, sig string) bool {
	n := min(len(data), len(sig))
	return string(data[:n]) == sig[:n]
}

// parse reads the header at the start of data, as Envoy's
// Filter::readProxyHeader / parseV1Header / parseV2Header / parseTlvs do
// (source/extensions/filters/listener/proxy_protocol/proxy_protocol.cc).
// It returns errIncomplete when more bytes are needed and errMalformed
// when data is not a valid header; h.version is set as soon as the version
// is known.
func parse(data []byte) (h header, err error) {
	if len(data) >= v2HeaderLen {
		if string(data[:v2SigLen]) == v2Sig {
			return parseV2(data)
		}
		if string(data[:v1SigLen]) != v1Sig {
			// Neither v2 nor v1: Envoy gives up at once.
			return h, errMalformed
		}
	} else if len(data) < 2 || prefixOf(data, v2Sig) {
		// Too short to tell a v1 line ("\r\n" opens the v2 signature).
		return h, errIncomplete
	}
	i := bytes.Index(data, []byte("\r\n"))
	if i < 0 {
		if len(data) >= maxV1Len {
			return h, errMalformed
		}
		return h, errIncomplete
	}
	h.version = versionV1
	h.length = i + 2
	if h.length > maxV1Len {
		return h, errMalformed
	}
	return parseV1(h, data[:h.length])
}

// parseV1 parses "PROXY TCP4|TCP6|UNKNOWN src dst sport dport\r\n".
func parseV1(h header, line []byte) (header, error) {
	s := strings.TrimRight(string(line), " \t\f\v\r\n")
	// Envoy splits on single spaces keeping empty tokens, so a doubled
	// space is an error.
	parts := strings.Split(s, " ")
	if len(parts) < 2 || parts[0] != "PROXY" {
		return h, errMalformed
	}
	if parts[1] == "UNKNOWN" {
		// "the receiver must ignore anything presented before the CRLF":
		// the real connection's addresses stay.
		h.keep = true
		return h, nil
	}
	if len(parts) != 6 {
		return h, errMalformed
	}
	var want4 bool
	switch parts[1] {
	case "TCP4":
		want4 = true
	case "TCP6":
	default:
		return h, errMalformed
	}
	src, ok1 := v1Addr(parts[2], parts[4], want4)
	dst, ok2 := v1Addr(parts[3], parts[5], want4)
	if !ok1 || !ok2 {
		return h, errMalformed
	}
	h.src, h.dst = src, dst
	return h, nil
}

func v1Addr(ip, port string, want4 bool) (netip.AddrPort, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil || a.Zone() != "" || a.Is4() != want4 || !unicast(a) {
		return netip.AddrPort{}, false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a, uint16(p)), true
}

// unicast is Envoy's Address::Ip::isUnicastAddress: not any, not
// multicast, not the v4 broadcast address.
func unicast(a netip.Addr) bool {
	return !a.IsUnspecified() && !a.IsMulticast() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// parseV2 parses a v2 header; data starts with the signature and has at
// least v2HeaderLen bytes.
func parseV2(data []byte) (header, error) {
	h := header{version: versionV2}
	verCmd, fam := data[12], data[13]
	if verCmd>>4 != 2 {
		return h, errMalformed
	}
	hdrLen := int(binary.BigEndian.Uint16(data[14:16]))
	h.length = v2HeaderLen + hdrLen
	cmd := verCmd & 0xf
	if cmd == v2CmdLocal {
		// A health check from the proxy itself: keep the real addresses,
		// skip the address block and TLVs whatever they hold.
		h.keep = true
		if len(data) < h.length {
			return h, errIncomplete
		}
		return h, nil
	}
	var addrLen int
	switch fam >> 4 {
	case v2FamInet:
		addrLen = v2AddrLenInet
	case v2FamInet6:
		addrLen = v2AddrLenInet6
	default:
		// AF_UNSPEC and AF_UNIX: Envoy closes ("an unsupported address
		// family (e.g. AF_UNIX) the connection will be closed").
		return h, errMalformed
	}
	if hdrLen < addrLen {
		return h, errMalformed
	}
	if cmd != v2CmdProxy {
		return h, errMalformed
	}
	if t := fam & 0xf; t != v2TransStream && t != v2TransDgram {
		return h, errMalformed
	}
	if len(data) < h.length {
		return h, errIncomplete
	}
	b := data[v2HeaderLen:]
	if addrLen == v2AddrLenInet {
		h.src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[0:4])), binary.BigEndian.Uint16(b[8:10]))
		h.dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), binary.BigEndian.Uint16(b[10:12]))
	} else {
		h.src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[0:16])), binary.BigEndian.Uint16(b[32:34]))
		h.dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[16:32])), binary.BigEndian.Uint16(b[34:36]))
	}
	if !checkTLVs(b[addrLen:hdrLen]) {
		return h, errMalformed
	}
	h.tlvStart = v2HeaderLen + addrLen
	if !unicast(h.src.Addr()) || !unicast(h.dst.Addr()) {
		return h, errMalformed
	}
	return h, nil
}

// checkTLVs walks the TLVs (type, 16-bit length, value): a truncated one
// is an error as in Envoy's parseTlvs, whatever the rules keep (tlv.go).
func checkTLVs(b []byte) bool {
	for len(b) > 0 {
		if len(b) < 3 {
			return false
		}
		n := int(binary.BigEndian.Uint16(b[1:3]))
		if 3+n > len(b) {
			return false
		}
		b = b[3+n:]
	}
	return true
}
