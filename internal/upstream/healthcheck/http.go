package healthcheck

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/codec/http1"
	"github.com/herald-proxy/herald/internal/http/codec/http2"
)

// HeaderImmediateHealthCheckFail is the response header with which an
// upstream asks to be taken out of rotation at once
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter#x-envoy-immediate-health-check-fail).
const HeaderImmediateHealthCheckFail = "x-envoy-immediate-health-check-fail"

// httpRequest builds the check request as Envoy's
// HttpActiveHealthCheckSession::onInterval: :method, host (:authority),
// :path, user-agent "Envoy/HC", :scheme http, then the configured header
// mutations. Envoy sends no x-envoy-expected-rq-timeout-ms on checks.
func httpRequest(c *HTTPConfig) *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, c.Method)
	h.Add(hhttp.Scheme, "http")
	h.Add(hhttp.Authority, c.Host)
	h.Add(hhttp.Path, c.Path)
	h.Add("user-agent", UserAgent)
	c.Headers.apply(h)
	if c.Send != nil {
		h.Set("content-length", strconv.Itoa(len(c.Send)))
	}
	return h
}

// judge is HttpActiveHealthCheckSession::healthCheckResult: the body must
// contain the receive blocks, then the status must be expected (else a
// retriable or plain failure); x-envoy-immediate-health-check-fail on a
// failing response excludes the host.
func judge(c *HTTPConfig, resp *hhttp.Headers, body []byte) Result {
	code, _ := strconv.Atoi(resp.Get(hhttp.Status))
	immediate := resp.Has(HeaderImmediateHealthCheckFail)
	if len(c.Receive) > 0 && !matchInOrder(c.Receive, body) {
		return Result{Outcome: Failure, ImmediateFail: immediate, Detail: fmt.Sprintf("status %d, payload mismatch", code)}
	}
	if !inRanges(code, c.Expected) {
		o := Failure
		if inRanges(code, c.Retriable) {
			o = RetriableFailure
		}
		return Result{Outcome: o, ImmediateFail: immediate, Detail: fmt.Sprintf("status %d", code)}
	}
	return Result{Outcome: Success}
}

// readBody reads a response body to its end, keeping the first limit bytes
// (all with limit 0) when the check matches a payload.
func readBody(s hhttp.UpstreamStream, keep bool, limit int, buf []byte) ([]byte, error) {
	var chunk [4096]byte
	for {
		n, err := s.ReadBody(chunk[:])
		if keep && n > 0 {
			take := n
			if limit > 0 {
				take = min(n, limit-len(buf))
			}
			buf = append(buf, chunk[:max(take, 0)]...)
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// exchange runs one request on s and judges the response.
func exchange(c *HTTPConfig, s hhttp.UpstreamStream) (Result, bool) {
	req := httpRequest(c)
	if err := s.WriteHeaders(req, c.Send == nil); err != nil {
		return networkResult(err), false
	}
	if c.Send != nil {
		if err := s.WriteData(c.Send, true); err != nil {
			return networkResult(err), false
		}
	}
	var resp hhttp.Headers
	end, err := s.ReadHeaders(&resp)
	if err != nil {
		return networkResult(err), false
	}
	var body []byte
	if !end {
		body, err = readBody(s, len(c.Receive) > 0, c.ResponseBufferSize, nil)
		if err != nil {
			return networkResult(err), false
		}
	}
	return judge(c, &resp, body), true
}

// http1Prober checks over herald's own HTTP/1.1 client codec.
type http1Prober struct {
	cfg  *Config
	dial DialFunc
}

func (p *http1Prober) newSession(addr string) probeSession {
	return &http1Session{p: p, addr: addr}
}

func (p *http1Prober) close() {}

type http1Session struct {
	p    *http1Prober
	addr string
	cc   *http1.ClientConn // kept between checks with reuse_connection
}

func (s *http1Session) check(ctx context.Context) Result {
	// A kept connection the peer closed while idle shows up only now;
	// Envoy notices the close while idle and connects afresh, so one retry
	// on a new connection stands in for that.
	for attempt := 0; ; attempt++ {
		reused := s.cc != nil
		if s.cc == nil {
			conn, err := s.p.dial(ctx, s.addr)
			if err != nil {
				return networkResult(err)
			}
			s.cc = http1.NewClientConn(conn)
		}
		unbind := bindConn(ctx, s.cc.NetConn())
		res, complete := exchange(s.p.cfg.HTTP, s.cc)
		usable := unbind()
		reusable := complete && usable && s.cc.Reusable() && s.p.cfg.ReuseConnection
		s.cc.Close(nil)
		if !reusable {
			_ = s.cc.CloseConn()
			s.cc = nil
		}
		if !complete && reused && attempt == 0 && ctx.Err() == nil {
			continue
		}
		return res
	}
}

func (s *http1Session) close() {
	if s.cc != nil {
		_ = s.cc.CloseConn()
		s.cc = nil
	}
}

// http2Prober checks over herald's HTTP/2 client (h2c, prior knowledge).
type http2Prober struct {
	cfg    *Config
	dial   DialFunc
	client *http2.Client // shared by sessions with reuse_connection, else nil
}

func newHTTP2Client() *http2.Client {
	c, err := http2.NewClient(http2.ClientOptions{})
	if err != nil {
		// Only bad HTTP/2 settings fail, and none are passed.
		panic(err)
	}
	return c
}

func newHTTP2Prober(cfg *Config, dial DialFunc) *http2Prober {
	p := &http2Prober{cfg: cfg, dial: dial}
	if cfg.ReuseConnection {
		p.client = newHTTP2Client()
	}
	return p
}

func (p *http2Prober) newSession(addr string) probeSession { return &http2Session{p: p, addr: addr} }

func (p *http2Prober) close() {
	if p.client != nil {
		_ = p.client.Close()
	}
}

type http2Session struct {
	p    *http2Prober
	addr string
}

// h2Stream opens a stream to addr on client (or a one-shot client).
func h2Stream(ctx context.Context, client *http2.Client, dial DialFunc, addr string) (hhttp.UpstreamStream, func(), error) {
	done := func() {}
	if client == nil {
		client = newHTTP2Client()
		done = func() { _ = client.Close() }
	}
	s, err := client.NewStream(ctx, addr, func(ctx context.Context) (net.Conn, error) { return dial(ctx, addr) })
	if err != nil {
		done()
		return nil, nil, err
	}
	return s, done, nil
}

func (s *http2Session) check(ctx context.Context) Result {
	st, done, err := h2Stream(ctx, s.p.client, s.p.dial, s.addr)
	if err != nil {
		return networkResult(err)
	}
	defer done()
	res, complete := exchange(s.p.cfg.HTTP, st)
	if complete {
		st.Close(nil)
	} else {
		st.Close(errors.New("healthcheck: check failed"))
	}
	return res
}

func (s *http2Session) close() {}
