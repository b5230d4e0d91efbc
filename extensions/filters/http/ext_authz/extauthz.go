package extauthz

import (
	"context"
	"errors"
	"slices"
	"strings"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f, _ := c.pool.Get().(*Filter)
	if f == nil {
		f = &Filter{}
	}
	f.cfg, f.cb = c, cb
	return f
}

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cfg *Config
	cb  httpfilter.Callbacks
	// okReply are the response headers an OK check asked for, applied in
	// EncodeHeaders; denied are the local reply's.
	okReply, denied []mutation
	levels          []any // scratch for the route's per-filter configs
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// abortFunc cancels the check when the stream is aborted.
type abortFunc context.CancelFunc

// Abort implements httpfilter.Aborter.
func (a abortFunc) Abort() { a() }

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// Filter::decodeHeaders and initiateCall (ext_authz.cc). Without a route,
// or on a route whose ExtAuthzPerRoute disables it, the filter does
// nothing; filter_enabled decides (deny_at_disable answers status_on_error
// when it does not hit); with with_request_body the body is buffered
// first; then the service is called and its answer applied.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	c := f.cfg
	r := f.cb.Route()
	if r == nil {
		return httpfilter.Continue
	}
	pr, _ := r.PerFilterConfig(c.name).(*PerRoute)
	if pr != nil && pr.disabled {
		return httpfilter.Continue
	}
	if !c.enabled.Hit() {
		c.disabled.Inc()
		if c.denyAtDisable {
			f.cb.StreamInfo().SetFlag(streaminfo.UnauthorizedExternalService)
			f.cb.SendLocalReply(c.statusOnError, "", DetailsError, nil)
			return httpfilter.Stop
		}
		return httpfilter.Continue
	}
	in := checkInput{headers: h, extensions: f.contextExtensions(r)}
	bs := c.body
	if pr != nil && pr.body.on {
		bs = pr.body
	}
	if bs.on && !(pr != nil && pr.disableBody) && !endStream && !isUpgrade(h) {
		body, _, err := f.cb.BufferRequestBody(bs.max)
		switch {
		case err == nil:
		case errors.Is(err, httpfilter.ErrBodyTooLarge) && bs.allowPartial:
			// Envoy: with allow_partial_message the check goes out once
			// max_request_bytes are in, with x-envoy-auth-partial-body: true.
		case errors.Is(err, httpfilter.ErrBodyTooLarge):
			// Envoy: "Envoy will return HTTP 413 and will not initiate
			// the authorization process when the buffer reaches the size
			// set in this field"; it takes precedence over
			// failure_mode_allow.
			f.cb.SendLocalReply(413, httpfilter.BodyTooLarge, httpfilter.DetailsBodyTooLarge, nil)
			return httpfilter.Stop
		default:
			return httpfilter.Stop
		}
		if body == nil {
			body = []byte{}
		}
		in.body, in.bodyMax, in.bodyBytes = body, bs.max, bs.packAsBytes
	}

	ctx, cancel := context.WithCancel(f.cb.Context())
	f.cb.SetAborter(abortFunc(cancel))
	resp := c.client.check(ctx, c.buildCheck(f.cb, &in))
	f.cb.SetAborter(nil)
	aborted := ctx.Err() != nil
	cancel()
	if aborted {
		// The stream ended or timed out while the check ran: its response
		// is already decided.
		return httpfilter.Stop
	}
	return f.complete(h, resp)
}

// contextExtensions merges check_settings.context_extensions of every
// level of r, more specific keys overriding (Envoy's FilterConfigPerRoute
// merge).
func (f *Filter) contextExtensions(r httpfilter.Route) map[string]string {
	f.levels = httpfilter.AllPerFilterConfigs(r, f.levels[:0], f.cfg.name)
	var out map[string]string
	shared := false
	for _, l := range f.levels {
		p, ok := l.(*PerRoute)
		if !ok || len(p.contextExtensions) == 0 {
			continue
		}
		if out == nil {
			// One level: its map is used as is (never written).
			out, shared = p.contextExtensions, true
			continue
		}
		if shared {
			m := make(map[string]string, len(out)+len(p.contextExtensions))
			for k, v := range out {
				m[k] = v
			}
			out, shared = m, false
		}
		for k, v := range p.contextExtensions {
			out[k] = v
		}
	}
	clear(f.levels)
	return out
}

// isUpgrade reports a WebSocket (HTTP/1.1 Upgrade) or extended CONNECT
// (HTTP/2 :protocol) request, whose body Envoy never buffers.
func isUpgrade(h *hhttp.Headers) bool {
	if h.Has(hhttp.Protocol) && h.Method() == "CONNECT" {
		return true
	}
	return h.Has("upgrade") && strings.Contains(strings.ToLower(h.Get("connection")), "upgrade")
}

// complete is Envoy's Filter::onComplete.
func (f *Filter) complete(h *hhttp.Headers, resp *response) httpfilter.Status {
	c := f.cfg
	switch resp.status {
	case statusOK:
		if c.validateMutations && (!validMutations(resp.request) || !validMutations(resp.reply) || !validQuery(resp.querySet)) {
			return f.reject()
		}
		if c.clearRouteCache && c.touchesRoute(resp) {
			f.cb.ClearRouteCache()
		}
		for i := range resp.request {
			applyRequest(h, &resp.request[i])
		}
		for _, name := range resp.remove {
			// Envoy never removes :-prefixed headers nor Host
			// (HeaderUtility::isRemovableHeader).
			name = strings.ToLower(name)
			if name == "" || name[0] == ':' || name == "host" {
				continue
			}
			h.Del(name)
		}
		if len(resp.querySet) > 0 || len(resp.queryRemove) > 0 {
			h.Set(hhttp.Path, editQuery(h.Path(), resp.querySet, resp.queryRemove))
		}
		f.okReply = resp.reply
		c.ok.Inc()
		return httpfilter.Continue
	case statusDenied:
		c.denied.Inc()
		if c.validateMutations && !validMutations(resp.reply) {
			return f.reject()
		}
		body := resp.body
		if c.maxDeniedBody > 0 && len(body) > c.maxDeniedBody {
			body = body[:c.maxDeniedBody]
		}
		f.denied = resp.reply
		f.cb.StreamInfo().SetFlag(streaminfo.UnauthorizedExternalService)
		f.cb.SendLocalReply(resp.code, body, DetailsDenied, f.modifyDenied)
		return httpfilter.Stop
	}
	c.errorC.Inc()
	if c.failureModeAllow {
		c.failureModeAllowed.Inc()
		if c.failureModeAllowHeader {
			h.Add(HeaderFailureModeAllowed, "true")
		}
		return httpfilter.Continue
	}
	f.cb.StreamInfo().SetFlag(streaminfo.UnauthorizedExternalService)
	f.cb.SendLocalReply(c.statusOnError, "", DetailsError, nil)
	return httpfilter.Stop
}

// reject is Envoy's Filter::rejectResponse: a 500 for mutations
// validate_mutations refuses.
func (f *Filter) reject() httpfilter.Status {
	f.cfg.invalid.Inc()
	f.cb.StreamInfo().SetFlag(streaminfo.UnauthorizedExternalService)
	f.cb.SendLocalReply(500, "", DetailsInvalid, nil)
	return httpfilter.Stop
}

// touchesRoute reports whether resp changes the request in a way that
// clear_route_cache reacts to: any mutation, or with
// clear_route_cache_headers only those of the listed headers (and query
// changes).
func (c *Config) touchesRoute(resp *response) bool {
	if len(resp.querySet) > 0 || len(resp.queryRemove) > 0 {
		return true
	}
	if len(c.clearRouteCacheHeaders) == 0 {
		return len(resp.request) > 0 || len(resp.remove) > 0
	}
	for i := range resp.request {
		if slices.Contains(c.clearRouteCacheHeaders, resp.request[i].name) {
			return true
		}
	}
	for _, n := range resp.remove {
		if slices.Contains(c.clearRouteCacheHeaders, strings.ToLower(n)) {
			return true
		}
	}
	return false
}

// applyRequest applies one mutation to the request headers (ext_authz.cc
// onComplete: headers_to_set setCopy, headers_to_add addCopy,
// headers_to_append only onto an existing header).
func applyRequest(h *hhttp.Headers, m *mutation) {
	switch m.action {
	case actSet:
		h.Set(m.name, m.value)
	case actAppend:
		for i := range h.Fields {
			if h.Fields[i].Name == m.name {
				h.Fields[i].Value += "," + m.value
				return
			}
		}
	case actAddIfAbsent:
		if !h.Has(m.name) {
			h.Add(m.name, m.value)
		}
	case actOverwriteIfExists:
		if h.Has(m.name) {
			h.Set(m.name, m.value)
		}
	default:
		h.Add(m.name, m.value)
	}
}

// modifyDenied puts the service's headers on the denied reply: every name
// it sets is first removed, then each field added, so one name may be set
// more than once (Set-Cookie).
func (f *Filter) modifyDenied(h *hhttp.Headers) {
	for i := range f.denied {
		if f.denied[i].action == actSet {
			h.Del(f.denied[i].name)
		}
	}
	for i := range f.denied {
		m := f.denied[i]
		if m.action == actSet {
			m.action = actAdd
		}
		applyRequest(h, &m)
	}
}

// validMutations is validate_mutations: names must be HTTP tokens (a
// leading ':' allowed) and values free of control characters, as
// HeaderUtility::headerNameIsValid and headerValueIsValid.
func validMutations(ms []mutation) bool {
	for i := range ms {
		if !validName(ms[i].name) || !validValue(ms[i].value) {
			return false
		}
	}
	return true
}

// validQuery is validate_mutations for query_parameters_to_set: names and
// values must be URL-encoded (Envoy's queryParameterIsUrlEncoded), so no
// separator, space or control character appears raw.
func validQuery(q []hhttp.HeaderField) bool {
	for _, f := range q {
		for _, s := range [2]string{f.Name, f.Value} {
			for i := 0; i < len(s); i++ {
				if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("&=#?", c) >= 0 {
					return false
				}
			}
		}
	}
	return true
}

func validName(n string) bool {
	n = strings.TrimPrefix(n, ":")
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// editQuery sets and removes query parameters of path (Envoy's
// QueryParamsMulti overwrite and remove; names and values are taken as
// the service sent them, already URL-encoded).
func editQuery(path string, set []hhttp.HeaderField, remove []string) string {
	base, query, _ := strings.Cut(path, "?")
	var frag string
	if i := strings.IndexByte(query, '#'); i >= 0 {
		query, frag = query[:i], query[i:]
	}
	var params []string
	if query != "" {
		params = strings.Split(query, "&")
	}
	key := func(p string) string { k, _, _ := strings.Cut(p, "="); return k }
	for _, s := range set {
		replaced := false
		out := params[:0]
		for _, p := range params {
			if key(p) == s.Name {
				if replaced {
					continue
				}
				p, replaced = s.Name+"="+s.Value, true
			}
			out = append(out, p)
		}
		params = out
		if !replaced {
			params = append(params, s.Name+"="+s.Value)
		}
	}
	if len(remove) > 0 {
		params = slices.DeleteFunc(params, func(p string) bool { return slices.Contains(remove, key(p)) })
	}
	if len(params) == 0 {
		return base + frag
	}
	return base + "?" + strings.Join(params, "&") + frag
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// EncodeHeaders implements httpfilter.EncoderFilter: Envoy's
// Filter::encodeHeaders adds an OK check's response_headers_to_add (adds,
// then sets, then add-if-absent, then overwrite-if-exists).
func (f *Filter) EncodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	if len(f.okReply) == 0 {
		return httpfilter.Continue
	}
	for _, a := range [...]action{actAdd, actSet, actAddIfAbsent, actOverwriteIfExists} {
		for i := range f.okReply {
			if f.okReply[i].action == a {
				applyRequest(h, &f.okReply[i])
			}
		}
	}
	return httpfilter.Continue
}

// EncodeData implements httpfilter.EncoderFilter.
func (f *Filter) EncodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// EncodeTrailers implements httpfilter.EncoderFilter.
func (f *Filter) EncodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// OnDestroy implements httpfilter.Destroyer: the filter goes back to its
// config's pool.
func (f *Filter) OnDestroy() {
	pool := f.cfg.pool
	f.cfg, f.cb, f.okReply, f.denied = nil, nil, nil, nil
	pool.Put(f)
}
