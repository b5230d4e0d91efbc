package cors

import (
	"sync"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

var filterPool = sync.Pool{New: func() any { return &Filter{} }}

// newFilter is the per-stream constructor; filters are pooled and return
// to the pool in OnDestroy.
func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f := filterPool.Get().(*Filter)
	f.cfg, f.cb = c, cb
	return f
}

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cfg *Config
	cb  httpfilter.Callbacks
	// policies are the levels' CorsPolicy, most specific first; backing
	// holds them without allocating.
	policies []*Policy
	backing  [4]*Policy
	raw      [4]any
	// origin is the allowed Origin of a CORS request ("" when the origin
	// did not match or the request is not a CORS request).
	origin string
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// loadPolicies is Envoy's initializeCorsPolicies: every level's policy,
// most specific first.
func (f *Filter) loadPolicies(r httpfilter.Route) {
	all := httpfilter.AllPerFilterConfigs(r, f.raw[:0], f.cfg.name)
	f.policies = f.backing[:0]
	for i := len(all) - 1; i >= 0; i-- {
		if p, ok := all[i].(*Policy); ok {
			f.policies = append(f.policies, p)
		}
	}
	clear(f.raw[:])
}

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// CorsFilter::decodeHeaders, answering preflights
// (https://www.w3.org/TR/cors/#resource-preflight-requests).
func (f *Filter) DecodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	r := f.cb.Route()
	if r == nil {
		return httpfilter.Continue
	}
	f.loadPolicies(r)
	if len(f.policies) == 0 {
		return httpfilter.Continue
	}
	enabled, shadow := f.policies[0].enabled.Hit(), f.policies[0].shadow.Hit()
	if !enabled && !shadow {
		return httpfilter.Continue
	}
	origin, ok := h.Lookup(hdrOrigin)
	if !ok || origin == "" {
		return httpfilter.Continue
	}
	allowed := f.originAllowed(origin)
	if allowed {
		f.cfg.originValid.Inc()
	} else {
		f.cfg.originInvalid.Inc()
	}
	if !enabled {
		return httpfilter.Continue // shadow mode: stats only
	}
	if allowed {
		f.origin = origin
	}
	if h.Method() != "OPTIONS" {
		return httpfilter.Continue
	}
	reqMethod := h.Get(hdrRequestMethod)
	if reqMethod == "" {
		return httpfilter.Continue
	}
	if !allowed && f.forwardNotMatchingPreflights() {
		return httpfilter.Continue
	}
	rh := &hhttp.Headers{Fields: make([]hhttp.HeaderField, 0, 7)}
	rh.Add(hhttp.Status, "200")
	if allowed {
		rh.Add(hdrAllowOrigin, origin)
	}
	if f.allowCredentials() {
		rh.Add(hdrAllowCredentials, "true")
	}
	if m := f.field(func(p *Policy) string { return p.allowMethods }); m != "" {
		if m == "*" {
			m = reqMethod
		}
		rh.Add(hdrAllowMethods, m)
	}
	if v := f.field(func(p *Policy) string { return p.allowHeaders }); v != "" {
		if v == "*" {
			v = h.Get(hdrRequestHeaders)
		}
		rh.Add(hdrAllowHeaders, v)
	}
	if v := f.field(func(p *Policy) string { return p.maxAge }); v != "" {
		rh.Add(hdrMaxAge, v)
	}
	// https://developer.chrome.com/blog/private-network-access-preflight
	if f.allowPrivateNetworkAccess() && h.Get(hdrRequestPrivateNet) == "true" {
		rh.Add(hdrAllowPrivateNetwork, "true")
	}
	f.cb.StreamInfo().ResponseCodeDetails = DetailsPreflight
	f.cb.EncodeHeaders(rh, true)
	return httpfilter.Stop
}

func (f *Filter) originAllowed(origin string) bool {
	for _, p := range f.policies {
		if len(p.allowOrigins) == 0 {
			continue
		}
		for i := range p.allowOrigins {
			m := &p.allowOrigins[i]
			if m.Match("*") || m.Match(origin) {
				return true
			}
		}
		return false
	}
	return false
}

// field returns the most specific non-empty value of a string field.
func (f *Filter) field(get func(*Policy) string) string {
	for _, p := range f.policies {
		if v := get(p); v != "" {
			return v
		}
	}
	return ""
}

func (f *Filter) allowCredentials() bool {
	for _, p := range f.policies {
		if p.allowCredentials != nil {
			return *p.allowCredentials
		}
	}
	return false
}

func (f *Filter) allowPrivateNetworkAccess() bool {
	for _, p := range f.policies {
		if p.allowPrivateNetworkAccess != nil {
			return *p.allowPrivateNetworkAccess
		}
	}
	return false
}

// forwardNotMatchingPreflights defaults to true (Envoy).
func (f *Filter) forwardNotMatchingPreflights() bool {
	for _, p := range f.policies {
		if p.forwardNotMatchingPreflights != nil {
			return *p.forwardNotMatchingPreflights
		}
	}
	return true
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// EncodeHeaders implements httpfilter.EncoderFilter: the headers of an
// actual CORS response (https://www.w3.org/TR/cors/#resource-requests).
func (f *Filter) EncodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	if f.origin == "" {
		return httpfilter.Continue
	}
	h.Set(hdrAllowOrigin, f.origin)
	if f.allowCredentials() {
		h.Set(hdrAllowCredentials, "true")
	}
	if v := f.field(func(p *Policy) string { return p.exposeHeaders }); v != "" {
		h.Set(hdrExposeHeaders, v)
	}
	return httpfilter.Continue
}

// EncodeData implements httpfilter.EncoderFilter.
func (f *Filter) EncodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// EncodeTrailers implements httpfilter.EncoderFilter.
func (f *Filter) EncodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// OnDestroy implements httpfilter.Destroyer.
func (f *Filter) OnDestroy() {
	f.cfg, f.cb, f.origin = nil, nil, ""
	clear(f.backing[:])
	f.policies = nil
	filterPool.Put(f)
}
