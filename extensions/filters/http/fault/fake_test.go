package fault

import (
	"context"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/bootstrap"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// filterPath is where the filter's config sits in a bootstrap.
const filterPath = "static_resources.listeners[0].filter_chains[0].filters[0].typed_config.http_filters[0].typed_config"

// parse decodes a YAML fragment as the loader does and requires it to pass
// Envoy's validation rules.
func parse[M proto.Message](t *testing.T, fragment string, m M) M {
	t.Helper()
	if _, err := bootstrap.Unmarshal("f.yaml", []byte(fragment), m); err != nil {
		t.Fatalf("parse: %v", err)
	}
	if v, ok := any(m).(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			t.Fatalf("fragment breaks Envoy's validation rules: %v", err)
		}
	}
	return m
}

func buildContext(store *stats.Store) httpfilter.BuildContext {
	return httpfilter.BuildContext{Path: filterPath, Name: Name, StatPrefix: "http.ingress.", Stats: store}
}

// fakeRoute returns per-filter configs by filter name.
type fakeRoute map[string]any

func (r fakeRoute) PerFilterConfig(name string) any { return r[name] }

// reply is one local reply the fake recorded.
type reply struct {
	code    int
	body    string
	details string
	headers *hhttp.Headers
}

// fakeCallbacks is a one-filter stream: local replies run through the
// filter's own encoder, as the connection manager runs them through every
// encoder filter.
type fakeCallbacks struct {
	route   httpfilter.Route
	info    streaminfo.Info
	filter  httpfilter.Filter
	grpc    bool
	replies []reply
	conn    *sync.Map // connection state; nil: ConnectionState unsupported
	ctx     context.Context
}

func (cb *fakeCallbacks) Context() context.Context {
	if cb.ctx != nil {
		return cb.ctx
	}
	return context.Background()
}
func (cb *fakeCallbacks) StreamInfo() *streaminfo.Info            { return &cb.info }
func (cb *fakeCallbacks) Route() httpfilter.Route                 { return cb.route }
func (cb *fakeCallbacks) ClearRouteCache()                        {}
func (cb *fakeCallbacks) ResponseStarted() bool                   { return len(cb.replies) > 0 }
func (cb *fakeCallbacks) DownstreamRemoteAddress() netip.AddrPort { return netip.AddrPort{} }
func (cb *fakeCallbacks) DownstreamDirectRemoteAddress() netip.AddrPort {
	return netip.AddrPort{}
}
func (cb *fakeCallbacks) BufferLimit() int                    { return 1 << 20 }
func (cb *fakeCallbacks) StreamID() uint64                    { return 1 }
func (cb *fakeCallbacks) SetIdleTimeout(time.Duration)        {}
func (cb *fakeCallbacks) SetAborter(httpfilter.Aborter)       {}
func (cb *fakeCallbacks) EncodeData([]byte, bool) error       { return nil }
func (cb *fakeCallbacks) EncodeTrailers(*hhttp.Headers) error { return nil }
func (cb *fakeCallbacks) EncodeHeaders(h *hhttp.Headers, end bool) error {
	if e, ok := cb.filter.(httpfilter.EncoderFilter); ok {
		e.EncodeHeaders(h, end)
	}
	cb.replies = append(cb.replies, reply{code: h.StatusCode(), details: cb.info.ResponseCodeDetails, headers: h})
	return nil
}

func (cb *fakeCallbacks) SendLocalReply(code int, body, details string, modify func(*hhttp.Headers)) {
	cb.info.ResponseCodeDetails = details
	h := &hhttp.Headers{}
	if cb.grpc {
		h.Add(hhttp.Status, "200")
		h.Add("grpc-status", "14")
	} else {
		h.Add(hhttp.Status, strconv.Itoa(code))
	}
	if modify != nil {
		modify(h)
	}
	cb.EncodeHeaders(h, body == "")
	cb.replies[len(cb.replies)-1].code = code
	cb.replies[len(cb.replies)-1].body = body
}

// connCallbacks adds httpfilter.ConnectionState.
type connCallbacks struct{ *fakeCallbacks }

func (cb connCallbacks) ConnectionValue(key any, create func() any) any {
	v, _ := cb.conn.LoadOrStore(key, create())
	return v
}

func request() *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "GET")
	h.Add(hhttp.Path, "/")
	h.Add(hhttp.Authority, "example.com")
	return h
}

func parseStatus(code int) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Status, strconv.Itoa(code))
	return h
}

func bootstrapParse(m proto.Message, fragment string) (*bootstrap.Index, error) {
	return bootstrap.Unmarshal("f.yaml", []byte(fragment), m)
}
