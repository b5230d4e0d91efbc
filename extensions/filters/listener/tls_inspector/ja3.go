package tlsinspector

import (
	"crypto/md5"
	"encoding/hex"
	"strconv"
)

// TLS extension types JA3 reads (RFC 8422 §5.1).
const (
	extSupportedGroups = 0x000a
	extECPointFormats  = 0x000b
)

// isGrease reports whether id is one of the 16 GREASE values of RFC 8701
// (0x0a0a, 0x1a1a, ... 0xfafa), which JA3 leaves out.
func isGrease(id int) bool { return id&0x0f0f == 0x0a0a && id>>8 == id&0xff }

// ja3 is Envoy's Filter::createJA3Hash
// (source/extensions/filters/listener/tls_inspector/tls_inspector.cc) over
// a ClientHello body: the MD5, in lowercase hex, of
// "version,ciphers,extensions,groups,point_formats", each list of decimal
// values joined by '-'. GREASE values are left out of the cipher suites
// and the extensions; Envoy keeps them in the supported groups, and so
// does herald. ok is false for a malformed body.
func ja3(body []byte) (hash string, ok bool) {
	r := reader{b: body, ok: true}
	version := r.u16()
	r.bytes(32) // random
	r.vec8()    // legacy_session_id
	ciphers := reader{b: r.vec16(), ok: true}
	r.vec8() // legacy_compression_methods
	if !r.ok {
		return "", false
	}
	fp := make([]byte, 0, 256)
	fp = strconv.AppendInt(fp, int64(version), 10)
	fp = append(fp, ',')
	first := true
	for ciphers.ok && len(ciphers.b) >= 2 {
		if id := ciphers.u16(); !isGrease(id) {
			fp = appendID(fp, id, &first)
		}
	}
	fp = append(fp, ',')
	var groups, formats []byte
	if len(r.b) > 0 {
		exts := reader{b: r.vec16(), ok: r.ok}
		first = true
		for exts.ok && len(exts.b) > 0 {
			typ := exts.u16()
			data := exts.vec16()
			if !exts.ok {
				return "", false
			}
			switch typ {
			case extSupportedGroups:
				groups = data
			case extECPointFormats:
				formats = data
			}
			if !isGrease(typ) {
				fp = appendID(fp, typ, &first)
			}
		}
		if !exts.ok {
			return "", false
		}
	}
	fp = append(fp, ',')
	// Groups: a u16 list length, then u16 values.
	g := reader{b: groups, ok: true}
	g.u16()
	first = true
	for g.ok && len(g.b) >= 2 {
		fp = appendID(fp, g.u16(), &first)
	}
	fp = append(fp, ',')
	// Point formats: a u8 list length, then u8 values.
	p := reader{b: formats, ok: true}
	p.u8()
	first = true
	for p.ok && len(p.b) >= 1 {
		fp = appendID(fp, p.u8(), &first)
	}
	sum := md5.Sum(fp)
	return hex.EncodeToString(sum[:]), true
}

func appendID(fp []byte, id int, first *bool) []byte {
	if !*first {
		fp = append(fp, '-')
	}
	*first = false
	return strconv.AppendInt(fp, int64(id), 10)
}
