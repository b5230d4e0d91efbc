package healthcheck

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Defaults from Envoy's health_check.proto and HealthCheckerImplBase
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/health_check.proto).
const (
	// DefaultNoTrafficInterval: no_traffic_interval "The default value for
	// 'no traffic interval' is 60 seconds."
	DefaultNoTrafficInterval = 60 * time.Second
	// DefaultResponseBufferSize: http_health_check.response_buffer_size
	// "If unspecified, the default value is 1024 bytes" (kDefaultMaxBytesInBuffer).
	DefaultResponseBufferSize = 1024
	// UserAgent is the user-agent every HTTP and gRPC check sends (Envoy's
	// Headers::UserAgentValues::EnvoyHealthChecker).
	UserAgent = "Envoy/HC"
)

// Kind is the checker a health check runs.
type Kind int

const (
	// HTTP is http_health_check (HTTP/1.1 or, with codec_client_type HTTP2, h2c).
	HTTP Kind = iota
	// TCP is tcp_health_check: connect, optionally send bytes and expect bytes.
	TCP
	// GRPC is grpc_health_check: grpc.health.v1.Health/Check over h2c.
	GRPC
)

func (k Kind) String() string {
	switch k {
	case HTTP:
		return "HTTP"
	case TCP:
		return "TCP"
	case GRPC:
		return "gRPC"
	}
	return "unknown"
}

// Config is one interpreted health_checks entry; immutable after Build.
type Config struct {
	// Kind says which of HTTP, TCP or GRPC below is set.
	Kind Kind

	// Timeout bounds one check, connect included; exceeding it is a
	// network timeout failure. Required.
	Timeout time.Duration
	// Interval between checks of a healthy host while the cluster has
	// traffic. Required.
	Interval time.Duration
	// InitialJitter: a random delay up to this before a host's first check
	// (default 0: check at once).
	InitialJitter time.Duration
	// IntervalJitter: a random amount up to this added to every interval
	// (default 0).
	IntervalJitter time.Duration
	// IntervalJitterPercent: a random amount up to this percentage of the
	// interval added to it (default 0).
	IntervalJitterPercent uint32
	// UnhealthyThreshold: consecutive network or retriable failures that
	// make a healthy host unhealthy. Required.
	UnhealthyThreshold uint32
	// HealthyThreshold: consecutive successes that make an unhealthy host
	// healthy (the very first check needs one). Required.
	HealthyThreshold uint32
	// ReuseConnection keeps the check connection between checks (default true).
	ReuseConnection bool
	// NoTrafficInterval replaces the intervals while the cluster has never
	// carried traffic (default 60 s).
	NoTrafficInterval time.Duration
	// NoTrafficHealthyInterval is the no-traffic interval for a healthy
	// host (default NoTrafficInterval).
	NoTrafficHealthyInterval time.Duration
	// UnhealthyInterval is the interval for an unhealthy host (default Interval).
	UnhealthyInterval time.Duration
	// UnhealthyEdgeInterval follows a failure that has not yet made the
	// host unhealthy (default UnhealthyInterval).
	UnhealthyEdgeInterval time.Duration
	// HealthyEdgeInterval follows a success that has not yet made the host
	// healthy (default Interval).
	HealthyEdgeInterval time.Duration
	// AlwaysLogFailures logs every failed check, not only state changes.
	AlwaysLogFailures bool
	// AlwaysLogSuccess logs every passed check.
	AlwaysLogSuccess bool

	HTTP *HTTPConfig
	TCP  *TCPConfig
	GRPC *GRPCConfig
}

// HTTPConfig is http_health_check.
type HTTPConfig struct {
	// Host is the :authority (default the cluster name).
	Host string
	// Path is the request path. Required.
	Path string
	// Method is the request method (default GET).
	Method string
	// HTTP2 is codec_client_type HTTP2 (h2c with prior knowledge).
	HTTP2 bool
	// Send is the request body, or nil.
	Send []byte
	// Receive are the blocks the response body must contain, in order.
	Receive [][]byte
	// ResponseBufferSize bounds the body bytes Receive is matched against
	// (default 1024; 0 means the whole body).
	ResponseBufferSize int
	// Expected and Retriable are [start, end) status ranges. Expected
	// defaults to 200 only.
	Expected  []StatusRange
	Retriable []StatusRange
	// Headers are request_headers_to_add/remove applied to every request.
	Headers HeaderMutations
}

// StatusRange is a half-open [Start, End) range of HTTP statuses.
type StatusRange struct{ Start, End int }

// TCPConfig is tcp_health_check.
type TCPConfig struct {
	// Send is written after connecting, or nil.
	Send []byte
	// Receive are the blocks the reply must contain, in order; empty means
	// a connect-only check.
	Receive [][]byte
}

// GRPCConfig is grpc_health_check.
type GRPCConfig struct {
	// ServiceName is HealthCheckRequest.service ("" checks the server).
	ServiceName string
	// Authority is the :authority (default the cluster name).
	Authority string
	// Metadata is initial_metadata added to every request.
	Metadata HeaderMutations
}

// Build interprets hc, the health_checks entry at path of the cluster
// called clusterName. Fields herald does not implement are errors naming
// them.
func Build(hc *corev3.HealthCheck, path, clusterName string) (*Config, configerr.List) {
	errs := configerr.CheckFields(hc, path,
		"timeout", "interval", "initial_jitter", "interval_jitter", "interval_jitter_percent",
		"unhealthy_threshold", "healthy_threshold", "reuse_connection", "no_traffic_interval",
		"no_traffic_healthy_interval", "unhealthy_interval", "unhealthy_edge_interval",
		"healthy_edge_interval", "always_log_health_check_failures", "always_log_health_check_success",
		"http_health_check", "tcp_health_check", "grpc_health_check")
	c := &Config{
		ReuseConnection:   true,
		NoTrafficInterval: DefaultNoTrafficInterval,
		AlwaysLogFailures: hc.GetAlwaysLogHealthCheckFailures(),
		AlwaysLogSuccess:  hc.GetAlwaysLogHealthCheckSuccess(),
	}
	positive := func(field string, d *durationpb.Duration, dst *time.Duration, required bool) {
		if d == nil {
			if required {
				errs = append(errs, configerr.At(path+"."+field, "%s is required", field))
			}
			return
		}
		*dst = d.AsDuration()
		if *dst <= 0 {
			errs = append(errs, configerr.At(path+"."+field, "must be positive"))
		}
	}
	positive("timeout", hc.GetTimeout(), &c.Timeout, true)
	positive("interval", hc.GetInterval(), &c.Interval, true)
	if d := hc.GetInitialJitter(); d != nil {
		c.InitialJitter = d.AsDuration()
	}
	if d := hc.GetIntervalJitter(); d != nil {
		c.IntervalJitter = d.AsDuration()
	}
	c.IntervalJitterPercent = hc.GetIntervalJitterPercent()
	if v := hc.GetUnhealthyThreshold(); v != nil {
		c.UnhealthyThreshold = v.GetValue()
	} else {
		errs = append(errs, configerr.At(path+".unhealthy_threshold", "unhealthy_threshold is required"))
	}
	if v := hc.GetHealthyThreshold(); v != nil {
		c.HealthyThreshold = v.GetValue()
	} else {
		errs = append(errs, configerr.At(path+".healthy_threshold", "healthy_threshold is required"))
	}
	if v := hc.GetReuseConnection(); v != nil {
		c.ReuseConnection = v.GetValue()
	}
	positive("no_traffic_interval", hc.GetNoTrafficInterval(), &c.NoTrafficInterval, false)
	c.NoTrafficHealthyInterval = c.NoTrafficInterval
	positive("no_traffic_healthy_interval", hc.GetNoTrafficHealthyInterval(), &c.NoTrafficHealthyInterval, false)
	// Envoy: unhealthy_interval defaults to interval, unhealthy_edge_interval
	// to unhealthy_interval, healthy_edge_interval to interval
	// (HealthCheckerImplBase's constructor).
	c.UnhealthyInterval = c.Interval
	positive("unhealthy_interval", hc.GetUnhealthyInterval(), &c.UnhealthyInterval, false)
	c.UnhealthyEdgeInterval = c.UnhealthyInterval
	positive("unhealthy_edge_interval", hc.GetUnhealthyEdgeInterval(), &c.UnhealthyEdgeInterval, false)
	c.HealthyEdgeInterval = c.Interval
	positive("healthy_edge_interval", hc.GetHealthyEdgeInterval(), &c.HealthyEdgeInterval, false)

	switch hs := hc.GetHealthChecker().(type) {
	case *corev3.HealthCheck_HttpHealthCheck_:
		c.Kind = HTTP
		c.HTTP = buildHTTP(hs.HttpHealthCheck, path+".http_health_check", clusterName, &errs)
	case *corev3.HealthCheck_TcpHealthCheck_:
		c.Kind = TCP
		c.TCP = buildTCP(hs.TcpHealthCheck, path+".tcp_health_check", &errs)
	case *corev3.HealthCheck_GrpcHealthCheck_:
		c.Kind = GRPC
		c.GRPC = buildGRPC(hs.GrpcHealthCheck, path+".grpc_health_check", clusterName, &errs)
	case *corev3.HealthCheck_CustomHealthCheck_:
		// Already reported by CheckFields.
	case nil:
		errs = append(errs, configerr.At(path, "one of http_health_check, tcp_health_check or grpc_health_check is required"))
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

func buildHTTP(h *corev3.HealthCheck_HttpHealthCheck, path, clusterName string, errs *configerr.List) *HTTPConfig {
	*errs = append(*errs, configerr.CheckFields(h, path,
		"host", "path", "send", "receive", "response_buffer_size", "request_headers_to_add",
		"request_headers_to_remove", "expected_statuses", "retriable_statuses",
		"codec_client_type", "method")...)
	c := &HTTPConfig{Host: h.GetHost(), Path: h.GetPath(), Method: "GET", ResponseBufferSize: DefaultResponseBufferSize}
	// Envoy: "If left empty (default value), the name of the cluster this
	// health check is associated with will be used" (host).
	if c.Host == "" {
		c.Host = clusterName
	}
	if c.Path == "" {
		*errs = append(*errs, configerr.At(path+".path", "path is required"))
	}
	if m := h.GetMethod(); m != corev3.RequestMethod_METHOD_UNSPECIFIED {
		c.Method = m.String()
	}
	switch h.GetCodecClientType() {
	case typev3.CodecClientType_HTTP1:
	case typev3.CodecClientType_HTTP2:
		c.HTTP2 = true
	default:
		*errs = append(*errs, configerr.At(path+".codec_client_type", "%s health checks are %s", h.GetCodecClientType(), configerr.NotSupported))
	}
	if s := h.GetSend(); s != nil {
		// Envoy: only methods that carry a body may send a payload.
		switch c.Method {
		case "GET", "HEAD", "DELETE", "TRACE":
			*errs = append(*errs, configerr.At(path+".send", "HTTP health check cannot specify a request payload with method '%s'", c.Method))
		}
		c.Send = payload(s, path+".send", errs)
	}
	for i, r := range h.GetReceive() {
		c.Receive = append(c.Receive, payload(r, fmt.Sprintf("%s.receive[%d]", path, i), errs))
	}
	if v := h.GetResponseBufferSize(); v != nil {
		c.ResponseBufferSize = int(v.GetValue())
	}
	if c.ResponseBufferSize != 0 {
		total := 0
		for _, r := range c.Receive {
			total += len(r)
		}
		if total > c.ResponseBufferSize {
			*errs = append(*errs, configerr.At(path+".receive", "the expected response length '%d' is over than http health response buffer size '%d'", total, c.ResponseBufferSize))
		}
	}
	c.Expected = statusRanges(h.GetExpectedStatuses(), path+".expected_statuses", "expected", errs)
	if len(c.Expected) == 0 {
		c.Expected = []StatusRange{{Start: 200, End: 201}}
	}
	c.Retriable = statusRanges(h.GetRetriableStatuses(), path+".retriable_statuses", "retriable", errs)
	c.Headers = buildMutations(h.GetRequestHeadersToAdd(), h.GetRequestHeadersToRemove(), path+".request_headers_to_add", path+".request_headers_to_remove", errs)
	return c
}

// statusRanges checks ranges as Envoy's HttpStatusChecker::validateRange:
// start < end, start >= 100, end <= 600.
func statusRanges(in []*typev3.Int64Range, path, kind string, errs *configerr.List) []StatusRange {
	var out []StatusRange
	for i, r := range in {
		p := fmt.Sprintf("%s[%d]", path, i)
		switch {
		case r.GetStart() >= r.GetEnd():
			*errs = append(*errs, configerr.At(p, "invalid http %s status range: expecting start < end, but found start=%d and end=%d", kind, r.GetStart(), r.GetEnd()))
		case r.GetStart() < 100:
			*errs = append(*errs, configerr.At(p, "invalid http %s status range: expecting start >= 100, but found start=%d", kind, r.GetStart()))
		case r.GetEnd() > 600:
			*errs = append(*errs, configerr.At(p, "invalid http %s status range: expecting end <= 600, but found end=%d", kind, r.GetEnd()))
		default:
			out = append(out, StatusRange{Start: int(r.GetStart()), End: int(r.GetEnd())})
		}
	}
	return out
}

func inRanges(code int, rs []StatusRange) bool {
	for _, r := range rs {
		if code >= r.Start && code < r.End {
			return true
		}
	}
	return false
}

func buildTCP(t *corev3.HealthCheck_TcpHealthCheck, path string, errs *configerr.List) *TCPConfig {
	*errs = append(*errs, configerr.CheckFields(t, path, "send", "receive")...)
	c := &TCPConfig{}
	if s := t.GetSend(); s != nil {
		c.Send = payload(s, path+".send", errs)
	}
	for i, r := range t.GetReceive() {
		c.Receive = append(c.Receive, payload(r, fmt.Sprintf("%s.receive[%d]", path, i), errs))
	}
	return c
}

func buildGRPC(g *corev3.HealthCheck_GrpcHealthCheck, path, clusterName string, errs *configerr.List) *GRPCConfig {
	*errs = append(*errs, configerr.CheckFields(g, path, "service_name", "authority", "initial_metadata")...)
	c := &GRPCConfig{ServiceName: g.GetServiceName(), Authority: g.GetAuthority()}
	// Envoy: authority "If left empty (default value), the name of the
	// cluster this health check is associated with will be used."
	if c.Authority == "" {
		c.Authority = clusterName
	}
	c.Metadata = buildMutations(g.GetInitialMetadata(), nil, path+".initial_metadata", "", errs)
	return c
}

// payload decodes a Payload: text is hex (Envoy's PayloadMatcher::loadProtoBytes).
func payload(p *corev3.HealthCheck_Payload, path string, errs *configerr.List) []byte {
	switch v := p.GetPayload().(type) {
	case *corev3.HealthCheck_Payload_Text:
		b, err := hex.DecodeString(v.Text)
		if err != nil {
			*errs = append(*errs, configerr.At(path+".text", "invalid hex string %q", v.Text))
			return nil
		}
		return b
	case *corev3.HealthCheck_Payload_Binary:
		return v.Binary
	}
	return nil
}

// HeaderMutations are compiled request_headers_to_add/remove (static values
// only).
type HeaderMutations struct {
	Remove []string
	Add    []HeaderToAdd
}

// HeaderToAdd is one request_headers_to_add entry.
type HeaderToAdd struct {
	Name, Value string
	Action      corev3.HeaderValueOption_HeaderAppendAction
	KeepEmpty   bool
}

func buildMutations(add []*corev3.HeaderValueOption, remove []string, addPath, removePath string, errs *configerr.List) HeaderMutations {
	var m HeaderMutations
	for i, r := range remove {
		if r == "" || r[0] == ':' || strings.EqualFold(r, "host") {
			*errs = append(*errs, configerr.At(fmt.Sprintf("%s[%d]", removePath, i), ":-prefixed or host headers may not be removed"))
			continue
		}
		m.Remove = append(m.Remove, strings.ToLower(r))
	}
	for i, o := range add {
		p := fmt.Sprintf("%s[%d]", addPath, i)
		*errs = append(*errs, configerr.CheckFields(o, p, "header", "append", "append_action", "keep_empty_value")...)
		hv := o.GetHeader()
		name := strings.ToLower(hv.GetKey())
		if name == "" || name[0] == ':' || name == "host" {
			*errs = append(*errs, configerr.At(p+".header.key", ":-prefixed or host headers may not be modified"))
			continue
		}
		a := HeaderToAdd{Name: name, Value: hv.GetValue(), Action: o.GetAppendAction(), KeepEmpty: o.GetKeepEmptyValue()}
		if a.Value == "" && len(hv.GetRawValue()) > 0 {
			a.Value = string(hv.GetRawValue())
		}
		// Envoy's header parser: the legacy append true/false maps to
		// APPEND_IF_EXISTS_OR_ADD / OVERWRITE_IF_EXISTS_OR_ADD.
		if ap := o.GetAppend(); ap != nil && !ap.GetValue() {
			a.Action = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		}
		// Values are sent as written; command operators (%UPSTREAM_...%)
		// would need the access log formatter.
		if strings.Contains(strings.ReplaceAll(a.Value, "%%", ""), "%") {
			*errs = append(*errs, configerr.At(p+".header.value", "command operators in health check headers are %s", configerr.NotSupported))
			continue
		}
		a.Value = strings.ReplaceAll(a.Value, "%%", "%")
		m.Add = append(m.Add, a)
	}
	return m
}
