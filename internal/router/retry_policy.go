package router

import (
	"fmt"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/matcher"
)

// Retries, as Envoy's router
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_filters/router_filter#x-envoy-retry-on
// and route.v3.RetryPolicy,
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/route/v3/route_components.proto#config-route-v3-retrypolicy).
// The decisions follow source/common/router/retry_state_impl.cc.

// RetryOn is a set of retry conditions (Envoy's RetryPolicy::RETRY_ON_*).
type RetryOn uint32

// Retry conditions, by their retry_on / x-envoy-retry-on names.
const (
	RetryOn5xx                     RetryOn = 1 << iota // 5xx
	RetryOnGatewayError                                // gateway-error
	RetryOnConnectFailure                              // connect-failure
	RetryOnEnvoyRateLimited                            // envoy-ratelimited
	RetryOnRetriable4xx                                // retriable-4xx
	RetryOnRefusedStream                               // refused-stream
	RetryOnRetriableStatusCodes                        // retriable-status-codes
	RetryOnRetriableHeaders                            // retriable-headers
	RetryOnReset                                       // reset
	RetryOnResetBeforeRequest                          // reset-before-request
	RetryOnHTTP3PostConnectFailure                     // http3-post-connect-failure
	RetryOnGrpcCancelled                               // cancelled
	RetryOnGrpcDeadlineExceeded                        // deadline-exceeded
	RetryOnGrpcResourceExhausted                       // resource-exhausted
	RetryOnGrpcUnavailable                             // unavailable
	RetryOnGrpcInternal                                // internal
)

const retryOnGrpc = RetryOnGrpcCancelled | RetryOnGrpcDeadlineExceeded | RetryOnGrpcResourceExhausted |
	RetryOnGrpcUnavailable | RetryOnGrpcInternal

var retryOnHTTPNames = []struct {
	name string
	bit  RetryOn
}{
	{"5xx", RetryOn5xx},
	{"gateway-error", RetryOnGatewayError},
	{"connect-failure", RetryOnConnectFailure},
	{"envoy-ratelimited", RetryOnEnvoyRateLimited},
	{"retriable-4xx", RetryOnRetriable4xx},
	{"refused-stream", RetryOnRefusedStream},
	{"retriable-status-codes", RetryOnRetriableStatusCodes},
	{"retriable-headers", RetryOnRetriableHeaders},
	{"reset", RetryOnReset},
	{"reset-before-request", RetryOnResetBeforeRequest},
	{"http3-post-connect-failure", RetryOnHTTP3PostConnectFailure},
}

var retryOnGrpcNames = []struct {
	name string
	bit  RetryOn
}{
	{"cancelled", RetryOnGrpcCancelled},
	{"deadline-exceeded", RetryOnGrpcDeadlineExceeded},
	{"resource-exhausted", RetryOnGrpcResourceExhausted},
	{"unavailable", RetryOnGrpcUnavailable},
	{"internal", RetryOnGrpcInternal},
}

// ParseRetryOn parses a comma-separated list of x-envoy-retry-on names
// (grpc=false) or x-envoy-retry-grpc-on names (grpc=true). Envoy
// (RetryStateImpl::parseRetryOn) trims each token and ignores unknown ones;
// ok reports whether all were known.
func ParseRetryOn(s string, grpc bool) (on RetryOn, ok bool) {
	names := retryOnHTTPNames
	if grpc {
		names = retryOnGrpcNames
	}
	ok = true
	for s != "" {
		var tok string
		tok, s, _ = strings.Cut(s, ",")
		tok = strings.TrimSpace(tok)
		if tok == "" {
			continue
		}
		found := false
		for _, n := range names {
			if n.name == tok {
				on |= n.bit
				found = true
				break
			}
		}
		ok = ok && found
	}
	return on, ok
}

// Envoy's retry defaults: num_retries "defaults to 1"; the base back-off
// interval is 25 ms (runtime upstream.base_retry_backoff_ms) and the
// maximum "10 times the base_interval"; host_selection_retry_max_attempts
// "defaults to retrying once".
const (
	defaultNumRetries      = 1
	defaultRetryBase       = 25 * time.Millisecond
	defaultHostSelectRetry = 1
	previousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"
)

// RetryPolicy is a compiled route.v3.RetryPolicy. Immutable.
type RetryPolicy struct {
	on                      RetryOn
	numRetries              uint32
	perTryTimeout           time.Duration // 0: none
	perTryIdleTimeout       time.Duration // 0: none
	hostSelectionAttempts   int64
	previousHosts           bool
	statusCodes             []uint32
	baseInterval            time.Duration
	maxInterval             time.Duration
	retriableHeaders        []matcher.Header
	retriableRequestHeaders []matcher.Header
}

// defaultRetryPolicy is what a route without retry_policy uses when the
// request's x-envoy-retry-on or x-envoy-retry-grpc-on asks for retries
// (Envoy's RetryPolicyImpl::DefaultRetryPolicy).
var defaultRetryPolicy = &RetryPolicy{
	numRetries:            defaultNumRetries,
	hostSelectionAttempts: defaultHostSelectRetry,
	baseInterval:          defaultRetryBase,
	maxInterval:           10 * defaultRetryBase,
}

// RetryOn returns the configured retry_on conditions.
func (p *RetryPolicy) RetryOn() RetryOn { return p.on }

// NumRetries returns num_retries (default 1).
func (p *RetryPolicy) NumRetries() uint32 { return p.numRetries }

// PerTryTimeout returns per_try_timeout; 0 when unset.
func (p *RetryPolicy) PerTryTimeout() time.Duration { return p.perTryTimeout }

// PerTryIdleTimeout returns per_try_idle_timeout; 0 when unset.
func (p *RetryPolicy) PerTryIdleTimeout() time.Duration { return p.perTryIdleTimeout }

// BackOff returns the back-off base and maximum intervals.
func (p *RetryPolicy) BackOff() (base, max time.Duration) { return p.baseInterval, p.maxInterval }

// retryPolicyFields are the RetryPolicy fields herald implements; any
// other set field is refused by name.
var retryPolicyFields = []string{
	"retry_on", "num_retries", "per_try_timeout", "per_try_idle_timeout",
	"retry_host_predicate", "host_selection_retry_max_attempts",
	"retriable_status_codes", "retry_back_off", "retriable_headers",
	"retriable_request_headers",
}

// CompileRetryPolicy compiles a route or virtual host retry_policy; path is
// its field path for errors.
func CompileRetryPolicy(cfg *routev3.RetryPolicy, path string) (*RetryPolicy, error) {
	var errs configerr.List
	errs = append(errs, configerr.CheckFields(cfg, path, retryPolicyFields...)...)
	on, _ := ParseRetryOn(cfg.GetRetryOn(), false)
	grpcOn, _ := ParseRetryOn(cfg.GetRetryOn(), true)
	p := &RetryPolicy{
		on:                    on | grpcOn,
		numRetries:            defaultNumRetries,
		hostSelectionAttempts: defaultHostSelectRetry,
		baseInterval:          defaultRetryBase,
		statusCodes:           cfg.GetRetriableStatusCodes(),
	}
	if v := cfg.GetNumRetries(); v != nil {
		p.numRetries = v.GetValue()
	}
	if d := cfg.GetPerTryTimeout(); d != nil {
		p.perTryTimeout = d.AsDuration()
	}
	if d := cfg.GetPerTryIdleTimeout(); d != nil {
		p.perTryIdleTimeout = d.AsDuration()
	}
	if n := cfg.GetHostSelectionRetryMaxAttempts(); n != 0 {
		p.hostSelectionAttempts = n
	}
	for i, hp := range cfg.GetRetryHostPredicate() {
		pp := fmt.Sprintf("%s.retry_host_predicate[%d]", path, i)
		if hp.GetName() != previousHostsPredicate {
			errs = append(errs, configerr.At(pp+".name", "retry host predicate %q is %s (only %s is)", hp.GetName(), configerr.NotSupported, previousHostsPredicate))
			continue
		}
		p.previousHosts = true
	}
	// Envoy (RetryPolicyImpl): base_interval below 1 ms becomes 1 ms; the
	// max defaults to 10 × base and may not be below base.
	maxIv := time.Duration(0)
	if bo := cfg.GetRetryBackOff(); bo != nil {
		p.baseInterval = max1ms(bo.GetBaseInterval().AsDuration().Truncate(time.Millisecond))
		if mi := bo.GetMaxInterval(); mi != nil {
			maxIv = max1ms(mi.AsDuration().Truncate(time.Millisecond))
			if maxIv < p.baseInterval {
				errs = append(errs, configerr.At(path+".retry_back_off.max_interval", "retry_policy.max_interval must greater than or equal to the base_interval"))
			}
		}
	}
	if maxIv == 0 {
		maxIv = 10 * p.baseInterval
	}
	p.maxInterval = maxIv
	for i, hm := range cfg.GetRetriableHeaders() {
		if h, ok := matcher.NewHeader(hm, fmt.Sprintf("%s.retriable_headers[%d]", path, i), &errs); ok {
			p.retriableHeaders = append(p.retriableHeaders, h)
		}
	}
	for i, hm := range cfg.GetRetriableRequestHeaders() {
		if h, ok := matcher.NewHeader(hm, fmt.Sprintf("%s.retriable_request_headers[%d]", path, i), &errs); ok {
			p.retriableRequestHeaders = append(p.retriableRequestHeaders, h)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

func max1ms(d time.Duration) time.Duration {
	if d < time.Millisecond {
		return time.Millisecond
	}
	return d
}

// vhostRetry is what a virtual host says about retries. Envoy: a route's
// retry_policy "will take precedence over this config and it'll be treated
// independently (e.g.: values are not inherited)"; a route's
// per_request_buffer_limit_bytes likewise replaces the virtual host's.
type vhostRetry struct {
	policy        *RetryPolicy
	attemptInReq  bool // include_request_attempt_count
	attemptInResp bool // include_attempt_count_in_response
	bufferLimit   int  // per_request_buffer_limit_bytes; -1 when unset
}

func buildVhostRetry(cfg *routev3.VirtualHost, path string, errs *configerr.List) vhostRetry {
	r := vhostRetry{
		attemptInReq:  cfg.GetIncludeRequestAttemptCount(),
		attemptInResp: cfg.GetIncludeAttemptCountInResponse(),
		bufferLimit:   -1,
	}
	if v := cfg.GetPerRequestBufferLimitBytes(); v != nil {
		r.bufferLimit = int(v.GetValue())
	}
	if rp := cfg.GetRetryPolicy(); rp != nil {
		p, err := CompileRetryPolicy(rp, path+".retry_policy")
		if err != nil {
			*errs = append(*errs, configerr.Collect(err, path+".retry_policy", nil)...)
		}
		r.policy = p
	}
	return r
}

// routeRetry is a route's effective retry configuration.
type routeRetry struct {
	policy      *RetryPolicy // nil: none
	bufferLimit int          // -1: the connection's buffer limit applies
}

func buildRouteRetry(a *routev3.RouteAction, route *routev3.Route, vh *VirtualHost, path string, errs *configerr.List) routeRetry {
	r := routeRetry{policy: vh.retry.policy, bufferLimit: vh.retry.bufferLimit}
	if rp := a.GetRetryPolicy(); rp != nil {
		p, err := CompileRetryPolicy(rp, path+".retry_policy")
		if err != nil {
			*errs = append(*errs, configerr.Collect(err, path+".retry_policy", nil)...)
		}
		r.policy = p
	}
	if v := route.GetPerRequestBufferLimitBytes(); v != nil {
		r.bufferLimit = int(v.GetValue())
	}
	return r
}

// RetryPolicy returns the route's retry policy (its own, else its virtual
// host's), or nil.
func (r *Route) RetryPolicy() *RetryPolicy { return r.retry.policy }

// IncludeAttemptCount reports the virtual host's
// include_request_attempt_count and include_attempt_count_in_response.
func (r *Route) IncludeAttemptCount() (request, response bool) {
	return r.vhost.retry.attemptInReq, r.vhost.retry.attemptInResp
}

// RetryBufferLimit returns per_request_buffer_limit_bytes of the route or
// its virtual host; ok is false when neither sets it.
func (r *Route) RetryBufferLimit() (n int, ok bool) {
	return r.retry.bufferLimit, r.retry.bufferLimit >= 0
}
