package healthcheck

import (
	"strconv"
	"sync"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	hcv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/health_check/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/matcher"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*hcv3.HealthCheck]{
		Name:   Name,
		Config: &hcv3.HealthCheck{},
		Build:  Build,
	})
}

// Envoy's strings (health_check.cc, headers.h).
const (
	// Name is the filter's Envoy name.
	Name = "envoy.filters.http.health_check"
	// DetailsOK and DetailsFailed are the response_code_details of the
	// filter's own answers.
	DetailsOK     = "health_check_ok"
	DetailsFailed = "health_check_failed"

	hdrHealthCheckedCluster = "x-envoy-upstream-healthchecked-cluster"
	hdrImmediateFail        = "x-envoy-immediate-health-check-fail"
)

var unsupportedIssues = map[string]string{
	"cache_time":                      "#8",
	"cluster_min_healthy_percentages": "#8",
}

// HealthState is what the filter needs of the server: whether admin's
// /healthcheck/fail is in effect. internal/server's Server implements it;
// BuildContext.ServerContext carries it.
type HealthState interface {
	HealthcheckFailed() bool
}

// serverInfo is how the filter learns the local service cluster
// (node.cluster, --service-cluster) for
// x-envoy-upstream-healthchecked-cluster.
type serverInfo interface {
	ServerInfo() *adminv3.ServerInfo
}

// Config is the built filter. Immutable.
type Config struct {
	passThrough  bool
	headers      []matcher.Header
	state        HealthState
	localCluster string
}

// Build interprets a HealthCheck once per snapshot.
func Build(cfg *hcv3.HealthCheck, ctx httpfilter.BuildContext) (httpfilter.Factory, error) {
	errs := configerr.RejectUnlisted(cfg, ctx.Path, unsupportedIssues, "pass_through_mode", "headers")
	if cfg.GetPassThroughMode() == nil {
		errs = append(errs, configerr.At(ctx.Path+".pass_through_mode", "pass_through_mode is required"))
	}
	c := &Config{passThrough: cfg.GetPassThroughMode().GetValue()}
	for i, hm := range cfg.GetHeaders() {
		m, ok := matcher.NewHeader(hm, ctx.Path+".headers["+strconv.Itoa(i)+"]", &errs)
		if ok {
			c.headers = append(c.headers, m)
		}
	}
	st, ok := ctx.ServerContext.(HealthState)
	if !ok {
		st = healthy{}
	}
	c.state = st
	if si, ok := ctx.ServerContext.(serverInfo); ok {
		c.localCluster = si.ServerInfo().GetNode().GetCluster()
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c.newFilter, nil
}

// healthy is the state without a server (tests, validation).
type healthy struct{}

func (healthy) HealthcheckFailed() bool { return false }

var filterPool = sync.Pool{New: func() any { return &Filter{} }}

func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	f := filterPool.Get().(*Filter)
	f.cfg, f.cb = c, cb
	return f
}

// Filter is the per-stream filter. Owned by the stream goroutine.
type Filter struct {
	cfg *Config
	cb  httpfilter.Callbacks
	// isHealthCheck: the request matched the headers.
	isHealthCheck bool
	// handling: the filter answers the request (not passed upstream).
	handling bool
}

var (
	_ httpfilter.DecoderFilter = (*Filter)(nil)
	_ httpfilter.EncoderFilter = (*Filter)(nil)
	_ httpfilter.Destroyer     = (*Filter)(nil)
)

// DecodeHeaders implements httpfilter.DecoderFilter: Envoy's
// HealthCheckFilter::decodeHeaders. A health check is answered once the
// whole request arrived.
func (f *Filter) DecodeHeaders(h *hhttp.Headers, endStream bool) httpfilter.Status {
	c := f.cfg
	match := true
	for i := range c.headers {
		if !c.headers[i].Matches(h) {
			match = false
			break
		}
	}
	if match {
		f.isHealthCheck = true
		f.cb.StreamInfo().HealthCheck = true
		if !c.passThrough || c.state.HealthcheckFailed() {
			f.handling = true
		}
	}
	if endStream && f.handling {
		f.complete()
	}
	if f.handling {
		return httpfilter.Stop
	}
	return httpfilter.Continue
}

// DecodeData implements httpfilter.DecoderFilter.
func (f *Filter) DecodeData(_ []byte, endStream bool) httpfilter.Status {
	if !f.handling {
		return httpfilter.Continue
	}
	if endStream {
		f.complete()
	}
	return httpfilter.Stop
}

// DecodeTrailers implements httpfilter.DecoderFilter.
func (f *Filter) DecodeTrailers(*hhttp.Headers) httpfilter.Status {
	if !f.handling {
		return httpfilter.Continue
	}
	f.complete()
	return httpfilter.Stop
}

// complete is Envoy's onComplete: 200, or 503 (response flag LH) while
// failing health checks.
func (f *Filter) complete() {
	if f.cfg.state.HealthcheckFailed() {
		f.cb.StreamInfo().SetFlag(streaminfo.FailedLocalHealthCheck)
		f.cb.SendLocalReply(503, "", DetailsFailed, nil)
		return
	}
	f.cb.SendLocalReply(200, "", DetailsOK, nil)
}

// EncodeHeaders implements httpfilter.EncoderFilter: a health check's
// response names the local service cluster; any other response says that
// the server is failing health checks, so that downstream Envoys drain it.
func (f *Filter) EncodeHeaders(h *hhttp.Headers, _ bool) httpfilter.Status {
	if f.isHealthCheck {
		h.Set(hdrHealthCheckedCluster, f.cfg.localCluster)
	} else if f.cfg.state.HealthcheckFailed() {
		h.Set(hdrImmediateFail, "true")
	}
	return httpfilter.Continue
}

// EncodeData implements httpfilter.EncoderFilter.
func (f *Filter) EncodeData([]byte, bool) httpfilter.Status { return httpfilter.Continue }

// EncodeTrailers implements httpfilter.EncoderFilter.
func (f *Filter) EncodeTrailers(*hhttp.Headers) httpfilter.Status { return httpfilter.Continue }

// OnDestroy implements httpfilter.Destroyer.
func (f *Filter) OnDestroy() {
	*f = Filter{}
	filterPool.Put(f)
}
