package headermutation

import (
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cfg *Config
	cb  httpfilter.Callbacks
	// levels are the route levels' Mutations in the order they apply;
	// loaded says they were looked up (on the request, or on a locally
	// answered response).
	levels  []*Mutations
	backing [4]*Mutations
	raw     [4]any
	loaded  bool
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// load is Envoy's initializeRouteConfigs: every level's per-route
// mutations, least specific first when most_specific_header_mutations_wins
// (the route's then apply last and win), else most specific first (the
// route configuration's apply last).
func (f *Filter) load() {
	if f.loaded {
		return
	}
	f.loaded = true
	all := httpfilter.AllPerFilterConfigs(f.cb.Route(), f.raw[:0], f.cfg.name)
	f.levels = f.backing[:0]
	for i := range all {
		j := i
		if !f.cfg.mostSpecificWins {
			j = len(all) - 1 - i
		}
		if m, ok := all[j].(*Mutations); ok {
			f.levels = append(f.levels, m)
		}
	}
	clear(f.raw[:])
}

// DecodeHeaders implements httpfilter.DecoderFilter: the filter's request
// mutations, then each level's.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	apply(h, f.cfg.mutations.request)
	f.load()
	for _, m := range f.levels {
		apply(h, m.request)
	}
	return httpfilter.Continue
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(t *hhttp.Headers) httpfilter.Status {
	apply(t, f.cfg.mutations.requestTrailers)
	f.load()
	for _, m := range f.levels {
		apply(t, m.requestTrailers)
	}
	return httpfilter.Continue
}

// EncodeHeaders implements httpfilter.EncoderFilter.
func (f *Filter) EncodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	apply(h, f.cfg.mutations.response)
	f.load()
	for _, m := range f.levels {
		apply(h, m.response)
	}
	return httpfilter.Continue
}

// EncodeData implements httpfilter.EncoderFilter.
func (f *Filter) EncodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// EncodeTrailers implements httpfilter.EncoderFilter.
func (f *Filter) EncodeTrailers(t *hhttp.Headers) httpfilter.Status {
	apply(t, f.cfg.mutations.responseTrailers)
	f.load()
	for _, m := range f.levels {
		apply(t, m.responseTrailers)
	}
	return httpfilter.Continue
}

// OnDestroy implements httpfilter.Destroyer.
func (f *Filter) OnDestroy() {
	*f = Filter{}
	filterPool.Put(f)
}
