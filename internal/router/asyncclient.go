package router

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/streaminfo"
	"github.com/herald-proxy/herald/internal/upstream"
)

// AsyncClient sends requests that herald itself originates (ext_authz's
// HTTP service, remote JWKS fetches, request mirroring) to a cluster
// through the router filter, as Envoy's Http::AsyncClient does: the same
// load balancer, pools, circuit breakers, timeouts and
// cluster.<name>.upstream_rq_* stats as proxied traffic. Immutable; safe
// for concurrent use. Each Send runs on the caller's goroutine.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http_connection_management
// (the async client is the router without a downstream connection).
type AsyncClient struct {
	cfg     *FilterConfig
	route   *Route
	cluster string
}

// AsyncOptions configures an AsyncClient.
type AsyncOptions struct {
	// Timeout bounds each request (0: none), as the route timeout does.
	Timeout time.Duration
	// Retry, when set, is the retry policy of every request.
	Retry *routev3.RetryPolicy
	// StatPrefix prefixes the router's own stats ("http.async-client."
	// when empty, as Envoy's async client).
	StatPrefix string
}

// NewAsyncClient builds a client for cluster. The cluster is looked up
// per request, so a client built before the cluster exists (or across a
// cluster update) keeps working.
func NewAsyncClient(clusters *upstream.Manager, store *stats.Store, cluster string, opts AsyncOptions) (*AsyncClient, error) {
	if clusters == nil {
		return nil, errors.New("async client: no cluster manager")
	}
	prefix := opts.StatPrefix
	if prefix == "" {
		prefix = "http.async-client."
	}
	rt, err := asyncRoute(cluster, opts.Timeout, opts.Retry)
	if err != nil {
		return nil, err
	}
	return &AsyncClient{
		cfg:     NewFilterConfig(clusters, store, prefix, false),
		route:   rt,
		cluster: cluster,
	}, nil
}

// Cluster is the cluster the client sends to.
func (c *AsyncClient) Cluster() string { return c.cluster }

// AsyncResponse is a complete response. Local replies of the router (503
// no healthy upstream, 504 timeout, 503 overflow...) are responses too,
// with Details set, as Envoy's async client delivers them.
type AsyncResponse struct {
	Headers  *hhttp.Headers
	Body     []byte
	Trailers *hhttp.Headers
	// Details is the response_code_details of a local reply, else "via_upstream".
	Details string
	// Truncated: the body was longer than the maxBody given to Send.
	Truncated bool
}

// Status is the response's :status.
func (r *AsyncResponse) Status() int { return r.Headers.StatusCode() }

// ErrAsyncReset is returned when the request was reset without a response
// (the context ended, or the upstream reset after the response started).
var ErrAsyncReset = errors.New("async client: request reset")

// Send sends the request (headers must carry :method, :path and
// :authority; :scheme defaults to http) with body (nil: headers only) and
// waits for the whole response, keeping at most maxBody bytes of its body
// (0: 1 MiB, Envoy's default buffer limit). ctx cancels the request.
func (c *AsyncClient) Send(ctx context.Context, h *hhttp.Headers, body []byte, maxBody int) (*AsyncResponse, error) {
	return c.send(ctx, h, body, nil, maxBody)
}

// send is Send with request trailers (nil: none), for mirrors (mirror.go).
func (c *AsyncClient) send(ctx context.Context, h *hhttp.Headers, body []byte, trailers *hhttp.Headers, maxBody int) (*AsyncResponse, error) {
	if maxBody <= 0 {
		maxBody = 1 << 20
	}
	if !h.Has(hhttp.Scheme) {
		h.Set(hhttp.Scheme, "http")
	}
	s := &asyncStream{ctx: ctx, client: c, maxBody: maxBody}
	s.info.Protocol = "HTTP/1.1"
	s.info.StartTime = time.Now()
	s.info.RequestHeaders = h
	stop := context.AfterFunc(ctx, s.abort)
	defer stop()

	endStream := len(body) == 0 && trailers == nil
	if len(body) > 0 && trailers == nil && !h.Has("content-length") && !h.Has("transfer-encoding") {
		h.Set("content-length", strconv.Itoa(len(body)))
	}
	f := c.cfg.NewFilter(s).(*Filter)
	f.DecodeHeaders(h, endStream)
	switch {
	case endStream || s.done:
	case trailers == nil:
		f.DecodeData(body, true)
	default:
		if len(body) > 0 {
			f.DecodeData(body, false)
		}
		if !s.done {
			f.DecodeTrailers(trailers)
		}
	}
	f.OnDestroy()
	if !s.done {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrAsyncReset, err)
		}
		return nil, ErrAsyncReset
	}
	return &s.resp, nil
}

// asyncStream is the httpfilter.Callbacks of one async request.
type asyncStream struct {
	// Callbacks is embedded (nil) so that methods the filter model gains
	// later do not break this type; the router calls only the methods
	// implemented below.
	httpfilter.Callbacks

	ctx     context.Context
	client  *AsyncClient
	info    streaminfo.Info
	maxBody int

	resp    AsyncResponse
	started bool
	done    bool

	mu      sync.Mutex
	aborter httpfilter.Aborter
	aborted atomic.Bool
}

var asyncStreamIDs atomic.Uint64

func (s *asyncStream) abort() {
	s.aborted.Store(true)
	s.mu.Lock()
	a := s.aborter
	s.mu.Unlock()
	if a != nil {
		a.Abort()
	}
}

func (s *asyncStream) Context() context.Context     { return s.ctx }
func (s *asyncStream) StreamInfo() *streaminfo.Info { return &s.info }
func (s *asyncStream) Route() httpfilter.Route      { return s.client.route }
func (s *asyncStream) ClearRouteCache()             {}
func (s *asyncStream) ResponseStarted() bool        { return s.started }
func (s *asyncStream) BufferLimit() int             { return 1 << 20 }
func (s *asyncStream) SetIdleTimeout(time.Duration) {}
func (s *asyncStream) StreamID() uint64             { return asyncStreamIDs.Add(1) }
func (s *asyncStream) DownstreamRemoteAddress() netip.AddrPort {
	return netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
}
func (s *asyncStream) DownstreamDirectRemoteAddress() netip.AddrPort {
	return s.DownstreamRemoteAddress()
}

func (s *asyncStream) SetAborter(a httpfilter.Aborter) {
	s.mu.Lock()
	s.aborter = a
	s.mu.Unlock()
	if a != nil && s.aborted.Load() {
		a.Abort()
	}
}

func (s *asyncStream) SendLocalReply(code int, body, details string, modify func(*hhttp.Headers)) {
	h := &hhttp.Headers{}
	h.SetStatus(code)
	if body != "" {
		h.Set("content-type", "text/plain")
		h.Set("content-length", strconv.Itoa(len(body)))
	}
	if modify != nil {
		modify(h)
	}
	s.info.ResponseCodeDetails = details
	s.resp = AsyncResponse{Headers: h, Body: []byte(body), Details: details}
	s.started, s.done = true, true
}

func (s *asyncStream) EncodeHeaders(h *hhttp.Headers, endStream bool) error {
	s.resp.Headers = h.Clone()
	s.resp.Details = "via_upstream"
	s.started = true
	s.done = endStream
	return nil
}

func (s *asyncStream) EncodeData(data []byte, endStream bool) error {
	room := s.maxBody - len(s.resp.Body)
	if len(data) > room {
		s.resp.Truncated = true
		data = data[:max(room, 0)]
	}
	s.resp.Body = append(s.resp.Body, data...)
	if endStream {
		s.done = true
	}
	return nil
}

func (s *asyncStream) EncodeTrailers(t *hhttp.Headers) error {
	s.resp.Trailers = t.Clone()
	s.done = true
	return nil
}
