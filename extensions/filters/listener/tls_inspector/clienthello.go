package tlsinspector

import "errors"

// TLS constants (RFC 8446 §5.1, §4; RFC 6066 §3; RFC 7301 §3.1).
const (
	recordHeaderLen      = 5
	recordTypeHandshake  = 0x16
	handshakeClientHello = 0x01
	extServerName        = 0x0000
	extALPN              = 0x0010
	maxRecordPayload     = 1<<14 + 256 // TLSPlaintext.length limit with slack
)

var (
	errNotTLS    = errors.New("not a TLS ClientHello")
	errMalformed = errors.New("malformed ClientHello")
)

// hello is what parseClientHello found.
type hello struct {
	serverName string
	alpn       []string
	// body is the ClientHello body (after the handshake header), valid
	// only as long as the data it was parsed from, for ja3.
	body []byte
}

// parseClientHello parses the ClientHello at the start of data. It returns
// complete=false (and no error) when data ends before the ClientHello
// does. A ClientHello fragmented over several records is reassembled.
func parseClientHello(data []byte) (h hello, complete bool, err error) {
	if len(data) == 0 {
		return h, false, nil
	}
	if data[0] != recordTypeHandshake {
		return h, false, errNotTLS
	}
	if len(data) >= 2 && data[1] != 3 {
		return h, false, errNotTLS
	}
	// Collect the handshake bytes: the first record's payload, or several
	// records' when the ClientHello is fragmented.
	var msg []byte
	rest := data
	for {
		if len(rest) < recordHeaderLen {
			return h, false, nil
		}
		if rest[0] != recordTypeHandshake || rest[1] != 3 {
			return h, false, errMalformed
		}
		n := int(rest[3])<<8 | int(rest[4])
		if n == 0 || n > maxRecordPayload {
			return h, false, errMalformed
		}
		if len(rest) < recordHeaderLen+n {
			return h, false, nil
		}
		frag := rest[recordHeaderLen : recordHeaderLen+n]
		rest = rest[recordHeaderLen+n:]
		if msg == nil {
			msg = frag
		} else {
			msg = append(append([]byte(nil), msg...), frag...)
		}
		if len(msg) >= 4 {
			if msg[0] != handshakeClientHello {
				return h, false, errNotTLS
			}
			if want := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])); len(msg) >= want {
				h, err = parseHelloBody(msg[4:want])
				h.body = msg[4:want]
				return h, err == nil, err
			}
		}
	}
}

// reader reads big-endian fields from a byte slice; ok turns false on the
// first short read and stays false.
type reader struct {
	b  []byte
	ok bool
}

func (r *reader) bytes(n int) []byte {
	if !r.ok || len(r.b) < n {
		r.ok = false
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8() int {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *reader) u16() int {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return int(b[0])<<8 | int(b[1])
}

// vec8 and vec16 read a length-prefixed vector.
func (r *reader) vec8() []byte  { return r.bytes(r.u8()) }
func (r *reader) vec16() []byte { return r.bytes(r.u16()) }

func parseHelloBody(body []byte) (hello, error) {
	var h hello
	r := reader{b: body, ok: true}
	r.bytes(2)  // legacy_version
	r.bytes(32) // random
	r.vec8()    // legacy_session_id
	r.vec16()   // cipher_suites
	r.vec8()    // legacy_compression_methods
	if !r.ok {
		return h, errMalformed
	}
	if len(r.b) == 0 {
		return h, nil // no extensions (TLS 1.0-1.2 allow that)
	}
	exts := reader{b: r.vec16(), ok: r.ok}
	for exts.ok && len(exts.b) > 0 {
		typ := exts.u16()
		ext := reader{b: exts.vec16(), ok: exts.ok}
		if !exts.ok {
			break
		}
		switch typ {
		case extServerName:
			list := reader{b: ext.vec16(), ok: ext.ok}
			for list.ok && len(list.b) > 0 {
				nameType := list.u8()
				name := list.vec16()
				if list.ok && nameType == 0 && h.serverName == "" {
					h.serverName = string(name)
				}
			}
			if !list.ok {
				return h, errMalformed
			}
		case extALPN:
			list := reader{b: ext.vec16(), ok: ext.ok}
			for list.ok && len(list.b) > 0 {
				p := list.vec8()
				if list.ok && len(p) > 0 {
					h.alpn = append(h.alpn, string(p))
				}
			}
			if !list.ok {
				return h, errMalformed
			}
		}
	}
	if !exts.ok {
		return h, errMalformed
	}
	return h, nil
}
