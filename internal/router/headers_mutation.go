package router

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
)

// HeaderValueContext gives header values with command operators
// (%DOWNSTREAM_REMOTE_ADDRESS%, %REQ(x-foo)%…) what they read. The caller (the
// forwarding engine) implements it on its per-stream state; a nil context
// makes every operator expand to "", which drops the header unless
// keep_empty_value is set. Values that are unknown (no upstream host yet, an
// invalid address) are "", as Envoy's header formatter omits empty values.
type HeaderValueContext interface {
	// DownstreamRemoteAddress is the client address after x-forwarded-for
	// processing.
	DownstreamRemoteAddress() netip.AddrPort
	// DownstreamDirectRemoteAddress is the socket peer.
	DownstreamDirectRemoteAddress() netip.AddrPort
	// DownstreamLocalAddress is the local address of the downstream connection.
	DownstreamLocalAddress() netip.AddrPort
	// Protocol is "HTTP/1.0", "HTTP/1.1", "HTTP/2" or "HTTP/3".
	Protocol() string
	// UpstreamHost is the selected upstream host ("ip:port"), or "".
	UpstreamHost() string
	// RequestHeaders are the downstream request headers, for %REQ(...)% in
	// response headers; nil when unknown.
	RequestHeaders() *hhttp.Headers
}

// appendAction is core.v3.HeaderValueOption.HeaderAppendAction.
type appendAction int

const (
	appendIfExistsOrAdd appendAction = iota
	addIfAbsent
	overwriteIfExistsOrAdd
	overwriteIfExists
)

// headerMutations is one level's (route config, virtual host, route or
// weighted cluster) headers_to_add and headers_to_remove, compiled once.
type headerMutations struct {
	remove []string
	add    []headerToAdd
}

type headerToAdd struct {
	name      string
	value     headerValue
	action    appendAction
	keepEmpty bool
}

func (m *headerMutations) empty() bool { return len(m.remove) == 0 && len(m.add) == 0 }

// buildHeaderMutations compiles a level's headers_to_add/remove; addPath and
// removePath are the field paths of the two lists.
func buildHeaderMutations(add []*corev3.HeaderValueOption, remove []string, addPath, removePath string, errs *configerr.List) headerMutations {
	var m headerMutations
	for i, r := range remove {
		p := fmt.Sprintf("%s[%d]", removePath, i)
		// Envoy: HeaderUtility::isRemovableHeader — ":-prefixed or host
		// headers may not be removed".
		if !modifiableHeader(r) {
			*errs = append(*errs, configerr.At(p, ":-prefixed or host headers may not be removed"))
			continue
		}
		m.remove = append(m.remove, strings.ToLower(r))
	}
	for i, o := range add {
		p := fmt.Sprintf("%s[%d]", addPath, i)
		if a, ok := buildHeaderToAdd(o, p, errs); ok {
			m.add = append(m.add, a)
		}
	}
	return m
}

// modifiableHeader is Envoy's HeaderUtility::isModifiableHeader.
func modifiableHeader(name string) bool {
	return (name == "" || name[0] != ':') && !strings.EqualFold(name, "host")
}

func buildHeaderToAdd(o *corev3.HeaderValueOption, path string, errs *configerr.List) (headerToAdd, bool) {
	hv := o.GetHeader()
	if hv == nil {
		*errs = append(*errs, configerr.At(path+".header", "header is required"))
		return headerToAdd{}, false
	}
	if !modifiableHeader(hv.GetKey()) {
		*errs = append(*errs, configerr.At(path+".header.key", ":-prefixed or host headers may not be modified"))
		return headerToAdd{}, false
	}
	a := headerToAdd{name: strings.ToLower(hv.GetKey()), keepEmpty: o.GetKeepEmptyValue()}
	// Envoy (router/header_parser.cc HeadersToAddEntry): the legacy `append`
	// maps true → APPEND_IF_EXISTS_OR_ADD, false → OVERWRITE_IF_EXISTS_OR_ADD,
	// and may not be combined with a non-default append_action.
	if o.GetAppend() != nil {
		if o.GetAppendAction() != corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD {
			*errs = append(*errs, configerr.At(path+".append", "both append and append_action are set and it's not allowed"))
			return headerToAdd{}, false
		}
		if o.GetAppend().GetValue() {
			a.action = appendIfExistsOrAdd
		} else {
			a.action = overwriteIfExistsOrAdd
		}
	} else {
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			a.action = appendIfExistsOrAdd
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			a.action = addIfAbsent
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			a.action = overwriteIfExistsOrAdd
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			a.action = overwriteIfExists
		default:
			*errs = append(*errs, configerr.At(path+".append_action", "unknown value %d", o.GetAppendAction()))
			return headerToAdd{}, false
		}
	}
	raw := hv.GetValue()
	valuePath := path + ".header.value"
	if raw == "" && len(hv.GetRawValue()) > 0 {
		raw = string(hv.GetRawValue())
		valuePath = path + ".header.raw_value"
	}
	v, err := parseHeaderValue(raw)
	if err != nil {
		*errs = append(*errs, configerr.At(valuePath, "%v", err))
		return headerToAdd{}, false
	}
	a.value = v
	return a, true
}

// apply runs the mutations on h, Envoy's HeaderParser::evaluateHeaders
// (router/header_parser.cc): remove first, then format every value against
// the headers as they are after removal, then overwrite, then append. The
// ADD_IF_ABSENT and OVERWRITE_IF_EXISTS conditions see h before this level's
// additions. isResponse tells %REQ% and %RESP% which map h is.
func (m *headerMutations) apply(h *hhttp.Headers, ctx HeaderValueContext, isResponse bool) {
	for _, name := range m.remove {
		h.Del(name)
	}
	if len(m.add) == 0 {
		return
	}
	type pending struct {
		name, value string
		overwrite   bool
	}
	var buf [8]pending
	pend := buf[:0]
	for i := range m.add {
		a := &m.add[i]
		v := a.value.format(ctx, h, isResponse)
		if v == "" && !a.keepEmpty {
			continue
		}
		switch a.action {
		case appendIfExistsOrAdd:
			pend = append(pend, pending{name: a.name, value: v})
		case addIfAbsent:
			if !h.Has(a.name) {
				pend = append(pend, pending{name: a.name, value: v})
			}
		case overwriteIfExists:
			if h.Has(a.name) {
				pend = append(pend, pending{name: a.name, value: v, overwrite: true})
			}
		case overwriteIfExistsOrAdd:
			pend = append(pend, pending{name: a.name, value: v, overwrite: true})
		}
	}
	for _, p := range pend {
		if p.overwrite {
			h.Set(p.name, p.value)
		}
	}
	for _, p := range pend {
		if !p.overwrite {
			h.Add(p.name, p.value)
		}
	}
}

// headerValue is a header value compiled from Envoy's substitution format:
// literal text (with %% for %) and %COMMAND%, %COMMAND(args)%, %COMMAND:N%.
type headerValue struct {
	// literal is the whole value when parts is nil.
	literal string
	parts   []valuePart
}

type valuePart struct {
	literal string
	op      operator // opLiteral for literal
	args    []string // REQ/RESP: header name and alternative
	maxLen  int      // 0: no limit
}

type operator int

const (
	opLiteral operator = iota
	opDownstreamRemoteAddress
	opDownstreamRemoteAddressWithoutPort
	opDownstreamRemotePort
	opDownstreamDirectRemoteAddress
	opDownstreamDirectRemoteAddressWithoutPort
	opDownstreamLocalAddress
	opDownstreamLocalAddressWithoutPort
	opDownstreamLocalPort
	opProtocol
	opUpstreamHost
	opHostname
	opReq
	opResp
)

// operators are the command operators herald supports in header values
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#command-operators).
var operators = map[string]operator{
	"DOWNSTREAM_REMOTE_ADDRESS":                     opDownstreamRemoteAddress,
	"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":        opDownstreamRemoteAddressWithoutPort,
	"DOWNSTREAM_REMOTE_PORT":                        opDownstreamRemotePort,
	"DOWNSTREAM_DIRECT_REMOTE_ADDRESS":              opDownstreamDirectRemoteAddress,
	"DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT": opDownstreamDirectRemoteAddressWithoutPort,
	"DOWNSTREAM_LOCAL_ADDRESS":                      opDownstreamLocalAddress,
	"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":         opDownstreamLocalAddressWithoutPort,
	"DOWNSTREAM_LOCAL_PORT":                         opDownstreamLocalPort,
	"PROTOCOL":                                      opProtocol,
	"UPSTREAM_HOST":                                 opUpstreamHost,
	"HOSTNAME":                                      opHostname,
	"REQ":                                           opReq,
	"RESP":                                          opResp,
}

// parseHeaderValue compiles s. Like Envoy's substitution formatter, an
// unescaped % must start a valid command; unknown commands are errors.
func parseHeaderValue(s string) (headerValue, error) {
	if !strings.Contains(s, "%") {
		return headerValue{literal: s}, nil
	}
	var parts []valuePart
	var lit strings.Builder
	hasOp := false
	for i := 0; i < len(s); {
		c := s[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			lit.WriteByte('%')
			i += 2
			continue
		}
		end := strings.IndexByte(s[i+1:], '%')
		if end < 0 {
			return headerValue{}, fmt.Errorf("invalid header value %q: unterminated command at position %d", s, i)
		}
		cmd := s[i+1 : i+1+end]
		p, err := parseCommand(cmd)
		if err != nil {
			return headerValue{}, fmt.Errorf("invalid header value %q: %w", s, err)
		}
		if lit.Len() > 0 {
			parts = append(parts, valuePart{literal: lit.String()})
			lit.Reset()
		}
		parts = append(parts, p)
		hasOp = true
		i += end + 2
	}
	if !hasOp {
		return headerValue{literal: lit.String()}, nil
	}
	if lit.Len() > 0 {
		parts = append(parts, valuePart{literal: lit.String()})
	}
	for i := range parts {
		if parts[i].op == opHostname {
			// Resolved once, at build time, as Envoy does.
			h, err := os.Hostname()
			if err != nil {
				h = ""
			}
			parts[i] = valuePart{literal: h}
		}
	}
	return headerValue{parts: parts}, nil
}

// parseCommand parses NAME, NAME(args) or NAME(args):N (the text between two %).
func parseCommand(cmd string) (valuePart, error) {
	name, rest := cmd, ""
	if i := strings.IndexAny(cmd, "(:"); i >= 0 {
		name, rest = cmd[:i], cmd[i:]
	}
	op, ok := operators[name]
	if !ok {
		return valuePart{}, fmt.Errorf("unsupported command operator %%%s%%", name)
	}
	p := valuePart{op: op}
	if strings.HasPrefix(rest, "(") {
		rparen := strings.IndexByte(rest, ')')
		if rparen < 0 {
			return valuePart{}, fmt.Errorf("command %%%s%%: missing )", cmd)
		}
		arg := rest[1:rparen]
		rest = rest[rparen+1:]
		if op != opReq && op != opResp {
			return valuePart{}, fmt.Errorf("command %s takes no arguments", name)
		}
		// Envoy: %REQ(X?Y):Z% — X, or Y when X is absent.
		main, alt, _ := strings.Cut(arg, "?")
		if main == "" {
			return valuePart{}, fmt.Errorf("command %s needs a header name", name)
		}
		p.args = []string{strings.ToLower(main)}
		if alt != "" {
			p.args = append(p.args, strings.ToLower(alt))
		}
	} else if op == opReq || op == opResp {
		return valuePart{}, fmt.Errorf("command %s needs a header name: %s(name)", name, name)
	}
	if rest != "" {
		if rest[0] != ':' {
			return valuePart{}, fmt.Errorf("command %%%s%%: unexpected %q", cmd, rest)
		}
		n, err := strconv.Atoi(rest[1:])
		if err != nil || n <= 0 {
			return valuePart{}, fmt.Errorf("command %%%s%%: invalid length %q", cmd, rest[1:])
		}
		p.maxLen = n
	}
	return p, nil
}

// format expands v; h is the header map being mutated.
func (v *headerValue) format(ctx HeaderValueContext, h *hhttp.Headers, isResponse bool) string {
	if v.parts == nil {
		return v.literal
	}
	if len(v.parts) == 1 {
		return v.parts[0].expand(ctx, h, isResponse)
	}
	var b strings.Builder
	for i := range v.parts {
		b.WriteString(v.parts[i].expand(ctx, h, isResponse))
	}
	return b.String()
}

func (p *valuePart) expand(ctx HeaderValueContext, h *hhttp.Headers, isResponse bool) string {
	if p.op == opLiteral {
		return p.literal
	}
	s := p.expandOp(ctx, h, isResponse)
	if p.maxLen > 0 && len(s) > p.maxLen {
		s = s[:p.maxLen]
	}
	return s
}

func (p *valuePart) expandOp(ctx HeaderValueContext, h *hhttp.Headers, isResponse bool) string {
	switch p.op {
	case opReq:
		req := h
		if isResponse {
			req = nil
			if ctx != nil {
				req = ctx.RequestHeaders()
			}
		}
		return lookupAlt(req, p.args)
	case opResp:
		if !isResponse {
			return ""
		}
		return lookupAlt(h, p.args)
	}
	if ctx == nil {
		return ""
	}
	switch p.op {
	case opDownstreamRemoteAddress:
		return addrString(ctx.DownstreamRemoteAddress(), true)
	case opDownstreamRemoteAddressWithoutPort:
		return addrString(ctx.DownstreamRemoteAddress(), false)
	case opDownstreamRemotePort:
		return portString(ctx.DownstreamRemoteAddress())
	case opDownstreamDirectRemoteAddress:
		return addrString(ctx.DownstreamDirectRemoteAddress(), true)
	case opDownstreamDirectRemoteAddressWithoutPort:
		return addrString(ctx.DownstreamDirectRemoteAddress(), false)
	case opDownstreamLocalAddress:
		return addrString(ctx.DownstreamLocalAddress(), true)
	case opDownstreamLocalAddressWithoutPort:
		return addrString(ctx.DownstreamLocalAddress(), false)
	case opDownstreamLocalPort:
		return portString(ctx.DownstreamLocalAddress())
	case opProtocol:
		return ctx.Protocol()
	case opUpstreamHost:
		return ctx.UpstreamHost()
	}
	return ""
}

func lookupAlt(h *hhttp.Headers, names []string) string {
	if h == nil {
		return ""
	}
	for _, n := range names {
		if v, ok := h.Lookup(n); ok {
			return v
		}
	}
	return ""
}

// addrString formats like Envoy's address formatters: "1.2.3.4:80",
// "[::1]:80", or without port "1.2.3.4", "::1".
func addrString(a netip.AddrPort, withPort bool) string {
	if !a.IsValid() {
		return ""
	}
	if withPort {
		return a.String()
	}
	return a.Addr().String()
}

func portString(a netip.AddrPort) string {
	if !a.IsValid() {
		return ""
	}
	return strconv.Itoa(int(a.Port()))
}
