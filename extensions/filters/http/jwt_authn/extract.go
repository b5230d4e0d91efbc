package jwtauthn

import (
	"strings"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// locationKind is where a token is extracted from.
type locationKind uint8

const (
	fromHeader locationKind = iota
	fromParam
	fromCookie
)

// location is one place tokens are extracted from, with the providers
// that named it (Envoy's HeaderLocationSpec / ParamLocationSpec). Immutable.
type location struct {
	kind   locationKind
	name   string // header name (lowercase), query parameter or cookie name
	prefix string // value_prefix of a header location
	// providers named the location, in config order.
	providers []*provider
}

// providerFor is Envoy's issuer lookup for a token checked against every
// provider (allow_missing, allow_missing_or_failed): the first provider of
// the location whose issuer is iss, else the first without an issuer.
func (l *location) providerFor(iss string) *provider {
	var anyIssuer *provider
	for _, p := range l.providers {
		if p.issuer == iss {
			return p
		}
		if p.issuer == "" && anyIssuer == nil {
			anyIssuer = p
		}
	}
	return anyIssuer
}

// token is one extracted token and where it came from.
type token struct {
	value string
	loc   *location
}

// extractor is Envoy's ExtractorImpl for one provider or for every
// provider. Immutable after Build.
type extractor struct {
	locs []*location
	// sanitize lists the headers removed from the request before
	// extraction: the providers' forward_payload_header and
	// claim_to_headers names (Envoy's sanitizeHeaders).
	sanitize []string
}

// Envoy's default token locations when a provider names none
// (JwtProvider: "If no explicit location is specified, the following
// default locations are tried in order").
const (
	defaultHeader      = "authorization"
	defaultValuePrefix = "Bearer "
	defaultParam       = "access_token"
)

// newExtractor merges the locations of providers.
func newExtractor(providers []*provider) *extractor {
	ex := &extractor{}
	find := func(kind locationKind, name, prefix string) *location {
		for _, l := range ex.locs {
			if l.kind == kind && l.name == name && l.prefix == prefix {
				return l
			}
		}
		l := &location{kind: kind, name: name, prefix: prefix}
		ex.locs = append(ex.locs, l)
		return l
	}
	for _, p := range providers {
		for _, spec := range p.locations {
			l := find(spec.kind, spec.name, spec.prefix)
			l.providers = append(l.providers, p)
		}
		if p.forwardPayloadHeader != "" {
			ex.sanitize = append(ex.sanitize, p.forwardPayloadHeader)
		}
		for _, ch := range p.claimHeaders {
			ex.sanitize = append(ex.sanitize, ch.header)
		}
	}
	return ex
}

// sanitizeHeaders removes the headers the providers will set.
func (ex *extractor) sanitizeHeaders(h *hhttp.Headers) {
	for _, name := range ex.sanitize {
		h.Del(name)
	}
}

// extract appends the request's tokens to dst: header locations first
// (every value of the header), then query parameters, then cookies, as
// Envoy's ExtractorImpl::extract.
func (ex *extractor) extract(h *hhttp.Headers, dst []token) []token {
	var query, cookies bool
	for _, l := range ex.locs {
		switch l.kind {
		case fromParam:
			query = true
			continue
		case fromCookie:
			cookies = true
			continue
		}
		for i := range h.Fields {
			if h.Fields[i].Name != l.name {
				continue
			}
			v := h.Fields[i].Value
			if l.prefix != "" {
				// Envoy: the value must contain value_prefix; the token
				// is the run of base64url characters and dots after it.
				at := strings.Index(v, l.prefix)
				if at < 0 {
					continue
				}
				v = extractJWT(v, at+len(l.prefix))
			}
			dst = append(dst, token{value: v, loc: l})
		}
	}
	if query {
		path := h.Path()
		if q := strings.IndexByte(path, '?'); q >= 0 {
			raw := path[q+1:]
			if f := strings.IndexByte(raw, '#'); f >= 0 {
				raw = raw[:f]
			}
			for _, l := range ex.locs {
				if l.kind != fromParam {
					continue
				}
				if v, ok := queryParam(raw, l.name); ok {
					dst = append(dst, token{value: v, loc: l})
				}
			}
		}
	}
	if cookies {
		for _, l := range ex.locs {
			if l.kind != fromCookie {
				continue
			}
			if v, ok := cookieValue(h, l.name); ok {
				dst = append(dst, token{value: v, loc: l})
			}
		}
	}
	return dst
}

// isTokenChar reports whether c may appear in a JWT: base64url characters
// and the dot.
func isTokenChar(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' ||
		c == '-' || c == '_' || c == '.'
}

// extractJWT is Envoy's extractJWT: from index after, skip to the first
// token character and take the run of token characters.
func extractJWT(v string, after int) string {
	start := after
	for start < len(v) && !isTokenChar(v[start]) {
		start++
	}
	if start == len(v) {
		return v[after:]
	}
	end := start
	for end < len(v) && isTokenChar(v[end]) {
		end++
	}
	return v[start:end]
}

// queryParam returns the first value of name in the raw query (not
// decoded, as Envoy's parseQueryString).
func queryParam(raw, name string) (string, bool) {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

// removeQueryParam returns path without every name=... pair of its query.
func removeQueryParam(path, name string) string {
	q := strings.IndexByte(path, '?')
	if q < 0 {
		return path
	}
	frag := ""
	rest := path[q+1:]
	if f := strings.IndexByte(rest, '#'); f >= 0 {
		rest, frag = rest[:f], rest[f:]
	}
	var b strings.Builder
	b.WriteString(path[:q])
	first := true
	for rest != "" {
		var kv string
		kv, rest, _ = strings.Cut(rest, "&")
		if k, _, _ := strings.Cut(kv, "="); k == name {
			continue
		}
		if first {
			b.WriteByte('?')
			first = false
		} else {
			b.WriteByte('&')
		}
		b.WriteString(kv)
	}
	b.WriteString(frag)
	return b.String()
}

// cookieValue is Envoy's Http::Utility::parseCookieValue: the value of
// the first cookie called name in the cookie headers, without
// surrounding double quotes.
func cookieValue(h *hhttp.Headers, name string) (string, bool) {
	for i := range h.Fields {
		if h.Fields[i].Name != "cookie" {
			continue
		}
		rest := h.Fields[i].Value
		for rest != "" {
			var kv string
			kv, rest, _ = strings.Cut(rest, ";")
			k, v, ok := strings.Cut(strings.TrimLeft(kv, " "), "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}
