package buffer

import (
	"errors"
	"strconv"
	"sync"

	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*bufferv3.Buffer]{
		Name:          Name,
		Config:        &bufferv3.Buffer{},
		PerRoute:      &bufferv3.BufferPerRoute{},
		Build:         Build,
		BuildPerRoute: BuildPerRoute,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.http.buffer"

// Settings is one built Buffer (the filter's or a route's). Immutable.
type Settings struct {
	// disabled: BufferPerRoute.disabled; the filter passes the request on
	// as it streams.
	disabled bool
	// maxRequestBytes is max_request_bytes (required, > 0).
	maxRequestBytes int
}

// Config is the built filter.
type Config struct {
	name     string
	settings Settings
	pool     sync.Pool
}

// Build interprets the filter's Buffer once per snapshot.
func Build(cfg *bufferv3.Buffer, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	s, err := buildSettings(cfg, ctx.Path)
	if err != nil {
		return nil, err
	}
	c := &Config{name: ctx.Name, settings: s}
	if c.name == "" {
		c.name = Name
	}
	return c.newFilter, nil
}

func buildSettings(cfg *bufferv3.Buffer, path string) (Settings, error) {
	errs := configerr.RejectUnlisted(cfg, path, nil, "max_request_bytes")
	// Envoy's validation: max_request_bytes is required and > 0.
	if cfg.GetMaxRequestBytes() == nil || cfg.GetMaxRequestBytes().GetValue() == 0 {
		errs = append(errs, configerr.At(path+".max_request_bytes", "max_request_bytes is required and must be greater than 0"))
	}
	if err := errs.Err(); err != nil {
		return Settings{}, err
	}
	return Settings{maxRequestBytes: int(cfg.GetMaxRequestBytes().GetValue())}, nil
}

// BuildPerRoute interprets a BufferPerRoute: disabled, or a Buffer that
// replaces the filter's.
func BuildPerRoute(m proto.Message, ctx httpfilter.BuildContext) (any, error) {
	pr := m.(*bufferv3.BufferPerRoute)
	errs := configerr.RejectUnlisted(pr, ctx.Path, nil, "disabled", "buffer")
	if err := errs.Err(); err != nil {
		return nil, err
	}
	if pr.GetDisabled() {
		return &Settings{disabled: true}, nil
	}
	if pr.GetBuffer() == nil {
		// Envoy: the override oneof is required.
		return nil, configerr.At(ctx.Path, "one of disabled or buffer is required")
	}
	s, err := buildSettings(pr.GetBuffer(), ctx.Path+".buffer")
	if err != nil {
		return nil, err
	}
	return &s, nil
}

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
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// BufferFilter::decodeHeaders and decodeData. A request with a body is
// held until the body is complete; over max_request_bytes it is answered
// 413 "Payload Too Large" (request_payload_too_large), as Envoy's filter
// manager does when a buffering filter's limit is exceeded. Once complete,
// content-length is set to the body's length when the request had none
// (BufferFilter::maybeAddContentLength).
func (f *Filter) DecodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	s := &f.cfg.settings
	if r := f.cb.Route(); r != nil {
		if pr, ok := r.PerFilterConfig(f.cfg.name).(*Settings); ok {
			s = pr
		}
	}
	if endStream || s.disabled {
		return httpfilter.Continue
	}
	body, _, err := f.cb.BufferRequestBody(s.maxRequestBytes)
	switch {
	case errors.Is(err, httpfilter.ErrBodyTooLarge):
		f.cb.SendLocalReply(413, httpfilter.BodyTooLarge, httpfilter.DetailsBodyTooLarge, nil)
		return httpfilter.Stop
	case err != nil:
		// The stream failed while buffering; its response is decided.
		return httpfilter.Stop
	}
	if !h.Has("content-length") {
		h.Set("content-length", strconv.Itoa(len(body)))
	}
	return httpfilter.Continue
}

// DecodeData implements httpfilter.DecoderFilter. It sees only what
// follows a body it did not buffer (a disabled route).
func (f *Filter) DecodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// OnDestroy implements httpfilter.Destroyer: the filter goes back to its
// pool.
func (f *Filter) OnDestroy() {
	c := f.cfg
	*f = Filter{}
	c.pool.Put(f)
}
