package http1

import (
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// Character classes (RFC 9110 §5.1, §5.5; RFC 3986 §3.2).
var (
	// tokenChars: tchar, for field names and methods.
	tokenChars [256]bool
	// valueChars: field-vchar, SP and HTAB (obs-text allowed). CTLs and DEL
	// are rejected, as nghttp2_check_header_value (Envoy's
	// headerValueIsValid) does.
	valueChars [256]bool
	// targetChars: visible ASCII for the request-target.
	targetChars [256]bool
	// authorityChars: unreserved, sub-delims, ":", "@", "[", "]" and "%"
	// (quiche's HeaderValidator::IsValidAuthority, used by Envoy).
	authorityChars [256]bool
	// unsafeOut: bytes that must never be written inside a header line.
	unsafeOut [256]bool
)

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		isAlnum := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
		tokenChars[c] = isAlnum || indexByte("!#$%&'*+-.^_`|~", b)
		valueChars[c] = b == '\t' || (b >= 0x20 && b != 0x7f)
		targetChars[c] = b > 0x20 && b < 0x7f
		authorityChars[c] = isAlnum || indexByte("-._~!$&'()*+,;=:@[]%", b)
	}
	unsafeOut['\r'], unsafeOut['\n'], unsafeOut[0] = true, true, true
}

func indexByte(s string, b byte) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return true
		}
	}
	return false
}

// knownMethods are the methods Envoy's Balsa parser accepts when
// allow_custom_methods is false (source/common/http/http1/balsa_parser.cc,
// isMethodValid). Returning the constant also spares an allocation.
var knownMethods = func() map[string]string {
	m := map[string]string{}
	for _, s := range []string{
		"ACL", "BIND", "CHECKOUT", "CONNECT", "COPY", "DELETE", "GET",
		"HEAD", "LINK", "LOCK", "MERGE", "MKACTIVITY", "MKCALENDAR", "MKCOL",
		"MOVE", "MSEARCH", "NOTIFY", "OPTIONS", "PATCH", "POST", "PROPFIND",
		"PROPPATCH", "PURGE", "PUT", "REBIND", "REPORT", "SEARCH", "SOURCE",
		"SUBSCRIBE", "TRACE", "UNBIND", "UNLINK", "UNLOCK", "UNSUBSCRIBE",
	} {
		m[s] = s
	}
	return m
}()

func lookupMethod(b []byte) (string, bool) {
	switch string(b) { // the compiler does not allocate for these comparisons
	case "GET":
		return "GET", true
	case "POST":
		return "POST", true
	case "HEAD":
		return "HEAD", true
	}
	m, ok := knownMethods[string(b)]
	return m, ok
}

// fieldSpan locates one header field in a header section: name is
// b[ns:ne], value b[vs:ve].
type fieldSpan struct{ ns, ne, vs, ve int }

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

// parseFields parses the field lines in b[pos:end] (each terminated by LF,
// optionally preceded by CR), lowercasing names in place and appending one
// span per field. Obsolete line folding is joined into the previous value
// with one SP, in place (Envoy's Balsa parser accepts folded lines:
// disallow_header_continuation_lines = false). A bare CR, a control
// character in a value, an invalid name or a line without a colon is an
// error.
func parseFields(b []byte, pos, end int, spans []fieldSpan, maxCount int) ([]fieldSpan, *hhttp.CodecError) {
	for pos < end {
		// Find the line [pos, le) and the next line start.
		le := pos
		for le < end && b[le] != '\n' {
			le++
		}
		next := le + 1
		if le > pos && b[le-1] == '\r' {
			le--
		}
		line := b[pos:le]
		if len(line) > 0 && isOWS(line[0]) {
			// obs-fold: continuation of the previous value.
			if len(spans) == 0 {
				return spans, badRequest("continuation line before first header")
			}
			s := &spans[len(spans)-1]
			vs, ve := pos, le
			for vs < ve && isOWS(b[vs]) {
				vs++
			}
			for ve > vs && isOWS(b[ve-1]) {
				ve--
			}
			for i := vs; i < ve; i++ {
				if !valueChars[b[i]] {
					return spans, codecErr(400, DetailsInvalidCharacters, "header value contains invalid characters")
				}
			}
			if ve > vs {
				if s.ve > s.vs {
					b[s.ve] = ' '
					s.ve++
				}
				s.ve += copy(b[s.ve:], b[vs:ve])
			}
			pos = next
			continue
		}
		colon := -1
		for i, c := range line {
			if c == ':' {
				colon = i
				break
			}
			if !tokenChars[c] {
				return spans, badRequest("invalid header name")
			}
			if c >= 'A' && c <= 'Z' {
				line[i] = c + ('a' - 'A')
			}
		}
		if colon <= 0 {
			return spans, badRequest("invalid header line")
		}
		vs, ve := pos+colon+1, le
		for vs < ve && isOWS(b[vs]) {
			vs++
		}
		for ve > vs && isOWS(b[ve-1]) {
			ve--
		}
		for i := vs; i < ve; i++ {
			if !valueChars[b[i]] {
				return spans, codecErr(400, DetailsInvalidCharacters, "header value contains invalid characters")
			}
		}
		if len(spans) >= maxCount {
			return spans, codecErr(431, DetailsTooManyHeaders, "too many headers")
		}
		spans = append(spans, fieldSpan{ns: pos, ne: pos + colon, vs: vs, ve: ve})
		pos = next
	}
	return spans, nil
}

// requestLine is the parsed request line; offsets index the header section.
type requestLine struct {
	method     string
	ts, te     int // request-target
	http11     bool
	versionErr bool
}

// parseRequestLine parses "method SP request-target SP HTTP-version" in
// b[:le]. Errors are http1.codec_error, as Balsa's HPE_INVALID_METHOD,
// HPE_INVALID_URL and HPE_INVALID_VERSION are.
func parseRequestLine(b []byte, le int) (requestLine, *hhttp.CodecError) {
	var rl requestLine
	line := b[:le]
	sp1 := -1
	for i, c := range line {
		if c == ' ' {
			sp1 = i
			break
		}
	}
	if sp1 <= 0 {
		return rl, badRequest("malformed request line")
	}
	m, ok := lookupMethod(line[:sp1])
	if !ok {
		return rl, badRequest("invalid method")
	}
	rl.method = m
	ts := sp1 + 1
	te := ts
	for te < len(line) && line[te] != ' ' {
		if !targetChars[line[te]] {
			return rl, badRequest("invalid request-target")
		}
		te++
	}
	if te == ts || te == len(line) {
		return rl, badRequest("malformed request line")
	}
	v := line[te+1:]
	if len(v) != 8 || string(v[:5]) != "HTTP/" || !isDigit(v[5]) || v[6] != '.' || !isDigit(v[7]) {
		return rl, badRequest("invalid HTTP version")
	}
	// Envoy treats every version other than HTTP/1.1 as HTTP/1.0
	// (BalsaParser::isHttp11).
	rl.http11 = v[5] == '1' && v[7] == '1'
	rl.ts, rl.te = ts, te
	return rl, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// parseContentLength parses a Content-Length value: one or more digits, no
// sign, no list. Anything else is Balsa's UNPARSABLE_CONTENT_LENGTH.
func parseContentLength(v string) (int64, bool) {
	if len(v) == 0 || len(v) > 18 {
		return 0, false
	}
	var n int64
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// hasToken reports whether the comma-separated list v holds tok (ASCII
// case-insensitive; tok is lowercase).
func hasToken(v, tok string) bool {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		e := v[:i]
		for len(e) > 0 && isOWS(e[0]) {
			e = e[1:]
		}
		for len(e) > 0 && isOWS(e[len(e)-1]) {
			e = e[:len(e)-1]
		}
		if equalFold(e, tok) {
			return true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return false
}

// equalFold compares s with the lowercase ASCII string t.
func equalFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != t[i] {
			return false
		}
	}
	return true
}

func validAuthority(s string) bool {
	for i := 0; i < len(s); i++ {
		if !authorityChars[s[i]] {
			return false
		}
	}
	return true
}

// splitAbsoluteURL splits an absolute-form request-target into scheme
// (lowercased, as Envoy does with allow_absolute_url_with_mixed_scheme),
// authority and path-and-query ("/" when empty).
func splitAbsoluteURL(u string) (scheme, authority, path string, ok bool) {
	i := 0
	for i < len(u) {
		c := u[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (i > 0 && (isDigit(c) || c == '+' || c == '-' || c == '.')) {
			i++
			continue
		}
		break
	}
	if i == 0 || len(u) < i+3 || u[i:i+3] != "://" {
		return "", "", "", false
	}
	switch {
	case equalFold(u[:i], "http"):
		scheme = "http"
	case equalFold(u[:i], "https"):
		scheme = "https"
	default:
		scheme = u[:i]
	}
	rest := u[i+3:]
	j := 0
	for j < len(rest) && rest[j] != '/' && rest[j] != '?' {
		j++
	}
	authority, path = rest[:j], rest[j:]
	if authority == "" {
		return "", "", "", false
	}
	if path == "" {
		path = "/"
	} else if path[0] == '?' {
		path = "/" + path
	}
	return scheme, authority, path, true
}

// parseChunkSize parses a chunk-size line (CR already checked by the
// caller and removed): 1*HEXDIG [ chunk-ext ]. Extensions are allowed and
// ignored; they may not hold control characters other than HTAB (Envoy:
// http1_balsa_disallow_lone_cr_in_chunk_extension).
func parseChunkSize(line []byte) (int64, bool) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			goto ext
		}
		if n >= 1<<59 {
			return 0, false // overflow
		}
		n = n<<4 | int64(d)
	}
ext:
	if i == 0 {
		return 0, false
	}
	rest := line[i:]
	for len(rest) > 0 && isOWS(rest[0]) {
		rest = rest[1:]
	}
	if len(rest) == 0 {
		// Whitespace is allowed only before an extension (BWS ";").
		return n, i == len(line)
	}
	if rest[0] != ';' {
		return 0, false
	}
	for _, c := range rest {
		if !valueChars[c] {
			return 0, false
		}
	}
	return n, true
}
