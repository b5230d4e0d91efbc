package jwtauthn

import (
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// Envoy's strings (filter.cc).
const (
	// maxURILength bounds the path in the www-authenticate realm
	// (MaximumUriLength).
	maxURILength = 256
	// invalidTokenError follows the realm unless the token is missing.
	invalidTokenError = `, error="invalid_token"`
	// wrongRequirementPrefix starts the body of the 403 for a per-route
	// requirement_name missing from requirement_map.
	wrongRequirementPrefix = "Failed JWT authentication: "
)

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f, _ := c.pool.Get().(*Filter)
	if f == nil {
		f = &Filter{}
	}
	f.cfg, f.cb = c, cb
	return f
}

// Filter is the per-stream filter: it decides on the request headers,
// fetching a remote JWKS on the stream goroutine when the cache has none.
// Owned by the stream goroutine.
type Filter struct {
	cfg     *Config
	cb      httpfilter.Callbacks
	scratch []token
}

// DecodeHeaders is Envoy's Filter::decodeHeaders and onComplete: find the
// requirement (CORS preflight bypass, per-route config, first matching
// rule), verify it, and answer 401 (403 for a disallowed audience) with
// www-authenticate when it fails.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	c := f.cfg
	for _, name := range c.claimHeaders {
		h.Del(name)
	}
	if c.bypassCORS && isCORSPreflight(h) {
		c.corsBypassed.Inc()
		c.allowed.Inc()
		return httpfilter.Continue
	}
	var v verifier
	if pr := f.perRoute(); pr != nil {
		if !pr.disabled {
			var ok bool
			if v, ok = c.requirements[pr.name]; !ok {
				c.denied.Inc()
				msg := "Wrong requirement_name: " + pr.name + ". It should be one of [" + c.requirementNames + "]"
				body := wrongRequirementPrefix + msg
				if c.stripFailure {
					body = ""
				}
				f.cb.SendLocalReply(403, body, rcDetails(msg), nil)
				return httpfilter.Stop
			}
		}
	} else {
		for i := range c.rules {
			if c.rules[i].match.Matches(h) {
				v = c.rules[i].v
				break
			}
		}
	}
	if v == nil {
		c.allowed.Inc()
		return httpfilter.Continue
	}
	// The realm is built before verification, which may remove the token
	// from the query (Envoy: buildOriginalUri before verify).
	realmPath := h.Path()
	vr := verification{ctx: f.cb.Context(), h: h, now: c.now(), scratch: f.scratch[:0]}
	st := v.verify(&vr)
	f.scratch = vr.scratch[:0]
	if vr.extracted != nil {
		f.cb.StreamInfo().SetDynamicMetadata(Name, vr.extracted)
	}
	if st != statusOK {
		c.denied.Inc()
		code := 401
		if st == statusJwtAudienceNotAllowed {
			code = 403
		}
		if c.stripFailure {
			f.cb.SendLocalReply(code, "", statusDetails[st], nil)
			return httpfilter.Stop
		}
		realm := wwwAuthenticate(h, realmPath, st)
		f.cb.SendLocalReply(code, st.String(), statusDetails[st], func(rh *hhttp.Headers) {
			rh.Set("www-authenticate", realm)
		})
		return httpfilter.Stop
	}
	c.allowed.Inc()
	if vr.clearRoute {
		f.cb.ClearRouteCache()
	}
	return httpfilter.Continue
}

// perRoute returns the most specific PerRouteConfig of the route, or nil.
func (f *Filter) perRoute() *perRoute {
	r := f.cb.Route()
	if r == nil {
		return nil
	}
	pr, _ := r.PerFilterConfig(f.cfg.name).(*perRoute)
	return pr
}

// wwwAuthenticate is Envoy's header value: Bearer realm="<original URI>"
// (Http::Utility::buildOriginalUri: x-forwarded-proto, "://", host, path
// cut at 256 bytes), plus error="invalid_token" unless the token is
// missing.
func wwwAuthenticate(h *hhttp.Headers, path string, st status) string {
	if len(path) > maxURILength {
		path = path[:maxURILength]
	}
	v := `Bearer realm="` + h.Get("x-forwarded-proto") + "://" + h.Authority() + path + `"`
	if st != statusJwtMissed {
		v += invalidTokenError
	}
	return v
}

// isCORSPreflight is Envoy's isCorsPreflightRequest: OPTIONS with a
// non-empty origin and access-control-request-method.
func isCORSPreflight(h *hhttp.Headers) bool {
	return h.Method() == "OPTIONS" && h.Get("origin") != "" && h.Get("access-control-request-method") != ""
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// OnDestroy implements httpfilter.Destroyer: the filter goes back to its
// config's pool.
func (f *Filter) OnDestroy() {
	pool := &f.cfg.pool
	clear(f.scratch[:cap(f.scratch)])
	f.cfg, f.cb, f.scratch = nil, nil, f.scratch[:0]
	pool.Put(f)
}
