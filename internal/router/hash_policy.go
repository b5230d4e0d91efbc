package router

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/cespare/xxhash/v2"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/matcher"
)

// HashPolicy is a route's RouteAction.hash_policy compiled once: the methods
// that turn a request into the 64-bit hash a hashing load balancer
// (ring_hash, maglev) places on its ring or table. A nil *HashPolicy
// produces no hash.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#envoy-v3-api-msg-config-route-v3-routeaction-hashpolicy
// (source/common/http/hash_policy.cc). Immutable after CompileHashPolicy.
type HashPolicy struct {
	methods []hashMethod
}

type hashKind uint8

const (
	hashHeader hashKind = iota
	hashCookie
	hashSourceIP
	hashQueryParameter
)

// hashMethod is one compiled RouteAction.HashPolicy.
type hashMethod struct {
	kind     hashKind
	terminal bool
	// name is the lowercase header name, the cookie name or the query
	// parameter name.
	name string

	// header.regex_rewrite, applied to each value before hashing.
	rewrite *regexp.Regexp
	subst   string

	// cookie.ttl: when set and the request has no cookie, one is
	// generated. setCookieSuffix is everything of the Set-Cookie value
	// after the quoted cookie value ("; Max-Age=…; Path=…; attr; HttpOnly").
	generate        bool
	setCookieSuffix string
}

// Downstream is what a hash policy reads of the downstream connection.
type Downstream struct {
	// Remote is the client's address: connection_properties.source_ip
	// hashes its IP (Envoy uses the stream's downstream remote address,
	// after x-forwarded-for processing); a generated cookie hashes it with
	// Local (Envoy uses the connection's peer address there).
	Remote netip.AddrPort
	// Local is the address the connection was accepted on.
	Local netip.AddrPort
}

// CompileHashPolicy compiles ps (RouteAction.hash_policy at path). nil or
// empty ps compiles to a nil *HashPolicy. filter_state is not supported
// (herald has no filter state objects) and is rejected by name.
func CompileHashPolicy(ps []*routev3.RouteAction_HashPolicy, path string) (*HashPolicy, error) {
	if len(ps) == 0 {
		return nil, nil
	}
	var errs configerr.List
	p := &HashPolicy{}
	for i, hp := range ps {
		ip := fmt.Sprintf("%s[%d]", path, i)
		m := hashMethod{terminal: hp.GetTerminal()}
		switch spec := hp.GetPolicySpecifier().(type) {
		case *routev3.RouteAction_HashPolicy_Header_:
			m.kind = hashHeader
			m.name = strings.ToLower(spec.Header.GetHeaderName())
			if rr := spec.Header.GetRegexRewrite(); rr != nil {
				re, sub, err := matcher.CompileRewrite(rr)
				if err != nil {
					errs = append(errs, configerr.At(ip+".header.regex_rewrite", "%v", err))
					continue
				}
				m.rewrite, m.subst = re, sub
			}
		case *routev3.RouteAction_HashPolicy_Cookie_:
			c := spec.Cookie
			m.kind = hashCookie
			m.name = c.GetName()
			if c.GetTtl() != nil {
				m.generate = true
				m.setCookieSuffix = setCookieSuffix(c)
			}
		case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
			// Envoy adds no method when source_ip is false.
			if !spec.ConnectionProperties.GetSourceIp() {
				continue
			}
			m.kind = hashSourceIP
		case *routev3.RouteAction_HashPolicy_QueryParameter_:
			m.kind = hashQueryParameter
			m.name = spec.QueryParameter.GetName()
		case *routev3.RouteAction_HashPolicy_FilterState_:
			errs = append(errs, configerr.At(ip+".filter_state", "%s", configerr.NotSupported))
			continue
		default:
			errs = append(errs, configerr.At(ip, "one of header, cookie, connection_properties, query_parameter or filter_state is required"))
			continue
		}
		p.methods = append(p.methods, m)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	if len(p.methods) == 0 {
		return nil, nil
	}
	return p, nil
}

// setCookieSuffix is Envoy's Http::Utility::makeSetCookieValue after the
// value: Max-Age when the ttl is not zero (ttl.seconds only), Path when set,
// the attributes in order ("name" alone when the value is empty), then
// HttpOnly, which Envoy always sets on a generated cookie.
func setCookieSuffix(c *routev3.RouteAction_HashPolicy_Cookie) string {
	var b strings.Builder
	if s := c.GetTtl().GetSeconds(); s != 0 {
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.FormatInt(s, 10))
	}
	if c.GetPath() != "" {
		b.WriteString("; Path=")
		b.WriteString(c.GetPath())
	}
	for _, a := range c.GetAttributes() {
		b.WriteString("; ")
		b.WriteString(a.GetName())
		if a.GetValue() != "" {
			b.WriteByte('=')
			b.WriteString(a.GetValue())
		}
	}
	b.WriteString("; HttpOnly")
	return b.String()
}

// Hash computes the request's hash. Envoy's HashPolicyImpl::generateHash:
// the methods run in order; each one that yields a hash is combined as
// hash = rotl(hash, 1) ^ new (the first one is taken as is), and a terminal
// method that has a hash so far stops the evaluation. ok is false when no
// method yields a hash (the load balancer then picks at random).
//
// setCookies holds the Set-Cookie values of cookies a cookie method with a
// ttl generated because the request had none; the caller adds each as a
// set-cookie header to the downstream response. Hash allocates only then
// (and for header.regex_rewrite and more than eight values of one header).
//
// As in Envoy, the caller evaluates the policy only when the cluster's load
// balancer uses a hash, so no cookie is generated for round robin.
func (p *HashPolicy) Hash(req *hhttp.Headers, conn Downstream) (hash uint64, ok bool, setCookies []string) {
	if p == nil {
		return 0, false, nil
	}
	for i := range p.methods {
		m := &p.methods[i]
		var h uint64
		var got bool
		switch m.kind {
		case hashHeader:
			h, got = m.headerHash(req)
		case hashCookie:
			var set string
			h, got, set = m.cookieHash(req, conn)
			if set != "" {
				setCookies = append(setCookies, set)
			}
		case hashSourceIP:
			h, got = sourceIPHash(conn.Remote)
		case hashQueryParameter:
			h, got = m.queryHash(req.Path())
		}
		if got {
			if ok {
				hash = (hash<<1 | hash>>63) ^ h
			} else {
				hash = h
			}
			ok = true
		}
		if m.terminal && ok {
			break
		}
	}
	return hash, ok, setCookies
}

// headerHash is Envoy's HeaderHashMethod: every value of the header (after
// regex_rewrite), sorted so that their order does not matter, hashed as
// one concatenation.
func (m *hashMethod) headerHash(req *hhttp.Headers) (uint64, bool) {
	var stack [8]string
	values := stack[:0]
	for i := range req.Fields {
		if req.Fields[i].Name == m.name {
			v := req.Fields[i].Value
			if m.rewrite != nil {
				v = m.rewrite.ReplaceAllString(v, m.subst)
			}
			values = append(values, v)
		}
	}
	switch len(values) {
	case 0:
		return 0, false
	case 1:
		return xxhash.Sum64String(values[0]), true
	}
	slices.Sort(values)
	var d xxhash.Digest
	d.Reset()
	for _, v := range values {
		_, _ = d.WriteString(v)
	}
	return d.Sum64(), true
}

// cookieHash is Envoy's CookieHashMethod: the hash of the cookie's value;
// with a ttl and no (or an empty) cookie, a generated value's hash and the
// Set-Cookie value to send.
func (m *hashMethod) cookieHash(req *hhttp.Headers, conn Downstream) (uint64, bool, string) {
	if v := cookieValue(req, m.name); v != "" {
		return xxhash.Sum64String(v), true, ""
	}
	if !m.generate {
		return 0, false, ""
	}
	v := generateCookieValue(conn)
	return xxhash.Sum64String(v), true, m.name + `="` + v + `"` + m.setCookieSuffix
}

// cookieValue is Envoy's Http::Utility::parseCookieValue: the value of the
// first cookie named name over every cookie header, each split on ';'
// (empty pieces skipped), the name taken from the first non-space to the
// first '=', the value to the end of the piece without one pair of
// surrounding double quotes.
func cookieValue(req *hhttp.Headers, name string) string {
	for i := range req.Fields {
		if req.Fields[i].Name != "cookie" {
			continue
		}
		rest := req.Fields[i].Value
		for rest != "" {
			piece, tail, _ := strings.Cut(rest, ";")
			rest = tail
			eq := strings.IndexByte(piece, '=')
			if eq < 0 {
				continue
			}
			k := strings.TrimLeft(piece[:eq], " ")
			if k != name {
				continue
			}
			v := piece[eq+1:]
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v
		}
	}
	return ""
}

// generateCookieValue is the value Envoy's router gives a generated cookie
// (Filter::addDownstreamSetCookie): the xxHash64 of the remote address
// followed by the local address, both "ip:port", as 16 lowercase hex
// digits (Hex::uint64ToHex), so that streams of one connection get the
// same cookie.
func generateCookieValue(conn Downstream) string {
	var buf [128]byte
	b := buf[:0]
	// An unknown address contributes nothing (Go would print
	// "invalid AddrPort").
	if conn.Remote.IsValid() {
		b = conn.Remote.AppendTo(b)
	}
	if conn.Local.IsValid() {
		b = conn.Local.AppendTo(b)
	}
	var out [16]byte
	const digits = "0123456789abcdef"
	h := xxhash.Sum64(b)
	for i := 15; i >= 0; i-- {
		out[i] = digits[h&0xf]
		h >>= 4
	}
	return string(out[:])
}

// sourceIPHash is Envoy's IpHashMethod: the hash of the peer's IP as text
// (Ip::addressAsString: no brackets, no port). No address, no hash.
func sourceIPHash(remote netip.AddrPort) (uint64, bool) {
	if !remote.IsValid() {
		return 0, false
	}
	var buf [64]byte
	return xxhash.Sum64(remote.Addr().AppendTo(buf[:0])), true
}

// queryHash is Envoy's QueryParameterHashMethod: the raw (not
// percent-decoded) value of the first parameter named m.name in the query
// of :path ("" for a parameter without '='), as
// Utility::QueryParamsMulti::parseQueryString splits it.
func (m *hashMethod) queryHash(path string) (uint64, bool) {
	q := strings.IndexByte(path, '?')
	if q < 0 {
		return 0, false
	}
	rest := path[q+1:]
	for rest != "" {
		param, tail, _ := strings.Cut(rest, "&")
		rest = tail
		k, v, _ := strings.Cut(param, "=")
		if k == m.name {
			return xxhash.Sum64String(v), true
		}
	}
	return 0, false
}
