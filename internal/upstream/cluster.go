package upstream

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/secret"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream/clustertype"
	"github.com/herald-proxy/herald/internal/upstream/healthcheck"
	"github.com/herald-proxy/herald/internal/upstream/lbpolicy"
	"github.com/herald-proxy/herald/internal/upstream/outlier"
	"github.com/herald-proxy/herald/internal/xds"
)

// Defaults from Envoy's cluster.proto.
const (
	// DefaultConnectTimeout: connect_timeout "The default is 5s."
	DefaultConnectTimeout = 5 * time.Second
	// DefaultBufferLimit: per_connection_buffer_limit_bytes "If unspecified,
	// an implementation defined default is applied (1MiB)."
	DefaultBufferLimit = 1 << 20
)

var protoUnmarshal = proto.UnmarshalOptions{}

// Thresholds are one priority's circuit breaker limits
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/circuit_breaker.proto).
// Enforced through Cluster.Resources (resource.go).
type Thresholds struct {
	MaxConnections     uint32
	MaxPendingRequests uint32
	MaxRequests        uint32
	MaxRetries         uint32
}

// defaultThresholds are Envoy's circuit breaker defaults: 1024 connections,
// pending requests and requests, 3 retries.
var defaultThresholds = Thresholds{MaxConnections: 1024, MaxPendingRequests: 1024, MaxRequests: 1024, MaxRetries: 3}

// Cluster is a built, running upstream cluster.
type Cluster struct {
	// Immutable after build:
	name              string
	observabilityName string
	cfg               *clusterv3.Cluster
	connectTimeout    time.Duration
	bufferLimit       int
	http              httpOptions
	thresholds        [2]Thresholds // DEFAULT, HIGH
	breakers          [2]breakerOptions
	resources         [2]*ResourceManager
	retryStats        *RetryStats
	keepAlive         *net.KeepAliveConfig
	panicThreshold    float64
	discovery         clustertype.Discovery
	policy            lbpolicy.Policy
	lb                lbOptions // priorities and localities (locality.go)
	dial              DialFunc
	transport         transportsocket.Upstream // nil: plaintext (raw_buffer)
	now               func() time.Time
	hcConfig          *healthcheck.Config // nil without health_checks
	hcStats           *healthcheck.Stats
	rand              func() uint64
	odConfig          *outlier.Config // nil without outlier_detection
	// od is the outlier detector, nil without outlier_detection; its
	// interval goroutine runs from start to stop.
	od *outlier.Detector

	// hc runs active health checks; set by start before discovery begins,
	// nil without health_checks.
	hc *healthcheck.Runner

	// Stats are the cluster's stats (cluster.<name>.*).
	Stats *Stats

	hostSet atomic.Pointer[HostSet]

	// Owned by discovery updates, guarded by mu:
	mu       sync.Mutex
	byKey    map[string]*Host
	hosts    []*Host
	stopped  bool
	ready    chan struct{}
	readyOne sync.Once
	cancel   context.CancelFunc
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.name }

// ConnectTimeout returns connect_timeout (default 5 s).
func (c *Cluster) ConnectTimeout() time.Duration { return c.connectTimeout }

// HTTPProtocol returns the protocol to speak to the cluster's hosts.
func (c *Cluster) HTTPProtocol() HTTPProtocol { return c.http.protocol }

// HTTP1Options returns the cluster's HTTP/1.1 options for the codec, or nil.
func (c *Cluster) HTTP1Options() *corev3.Http1ProtocolOptions { return c.http.http1 }

// HTTP2Options returns the cluster's HTTP/2 options for the codec, or nil.
func (c *Cluster) HTTP2Options() *corev3.Http2ProtocolOptions { return c.http.http2 }

// IdleTimeout returns the upstream connection idle timeout
// (common_http_protocol_options.idle_timeout, default 1 h; 0 disables it).
func (c *Cluster) IdleTimeout() time.Duration { return c.http.idleTimeout }

// MaxRequestsPerConnection returns max_requests_per_connection; 0 is
// unlimited (Envoy's default).
func (c *Cluster) MaxRequestsPerConnection() uint32 { return c.http.maxRequests }

// BufferLimit returns per_connection_buffer_limit_bytes (default 1 MiB).
func (c *Cluster) BufferLimit() int { return c.bufferLimit }

// Thresholds returns the circuit breaker thresholds for the default
// (high=false) or high routing priority.
func (c *Cluster) Thresholds(high bool) Thresholds {
	if high {
		return c.thresholds[1]
	}
	return c.thresholds[0]
}

// Discovery returns the cluster's discovery (the cluster type built from
// its config); admin /config_dump?include_eds reads EDS state through it.
func (c *Cluster) Discovery() clustertype.Discovery { return c.discovery }

// Config returns the cluster's config as given; do not modify it.
func (c *Cluster) Config() *clusterv3.Cluster { return c.cfg }

// buildEnv is what cluster building needs from the Manager.
type buildEnv struct {
	store    *stats.Store
	resolver clustertype.Resolver
	dial     DialFunc
	now      func() time.Time
	seed     func() uint64
	rand     func() uint64
	// xds is the server's xDS client for EDS clusters; nil without one.
	xds *xds.Client
	// secrets resolves transport sockets' SDS references; nil refuses them.
	secrets *secret.Manager
}

// Fields of Cluster that herald interprets; any other field set is an
// error naming it.
var clusterFields = []string{
	"name", "alt_stat_name", "type", "cluster_type", "connect_timeout",
	"per_connection_buffer_limit_bytes", "lb_policy", "load_assignment",
	"health_checks", "max_requests_per_connection", "circuit_breakers",
	"common_http_protocol_options", "http_protocol_options", "http2_protocol_options",
	"typed_extension_protocol_options", "dns_refresh_rate", "dns_failure_refresh_rate",
	"respect_dns_ttl", "dns_lookup_family", "dns_resolvers", "use_tcp_for_dns_lookups",
	"dns_resolution_config", "typed_dns_resolver_config", "dns_jitter",
	"wait_for_warm_on_init", "outlier_detection", "common_lb_config", "transport_socket",
	"metadata", "protocol_selection", "upstream_connection_options",
	"load_balancing_policy", "round_robin_lb_config", "eds_cluster_config",
	"least_request_lb_config", "ring_hash_lb_config", "maglev_lb_config",
}

// buildCluster interprets cfg; it starts nothing. Warnings are returned
// separately from errors.
func buildCluster(cfg *clusterv3.Cluster, path string, env buildEnv) (*Cluster, configerr.List, configerr.List) {
	var errs, warns configerr.List
	errs = append(errs, configerr.CheckFields(cfg, path, clusterFields...)...)
	if cfg.GetName() == "" {
		errs = append(errs, configerr.At(path+".name", "name is required"))
	}
	c := &Cluster{
		name:              cfg.GetName(),
		observabilityName: cfg.GetName(),
		cfg:               cfg,
		connectTimeout:    DefaultConnectTimeout,
		bufferLimit:       DefaultBufferLimit,
		thresholds:        [2]Thresholds{defaultThresholds, defaultThresholds},
		panicThreshold:    DefaultHealthyPanicThreshold,
		dial:              env.dial,
		now:               env.now,
		rand:              env.rand,
		byKey:             map[string]*Host{},
		ready:             make(chan struct{}),
	}
	if cfg.GetAltStatName() != "" {
		c.observabilityName = cfg.GetAltStatName()
	}
	if d := cfg.GetConnectTimeout(); d != nil {
		c.connectTimeout = d.AsDuration()
		if c.connectTimeout <= 0 {
			errs = append(errs, configerr.At(path+".connect_timeout", "must be positive"))
		}
	}
	if b := cfg.GetPerConnectionBufferLimitBytes(); b != nil {
		c.bufferLimit = int(b.GetValue())
	}
	var herrs configerr.List
	c.http, herrs = parseHTTPOptions(cfg, path)
	errs = append(errs, herrs...)

	warns = clusterWarnings(cfg, path)
	if cfg.GetWaitForWarmOnInit() != nil && !cfg.GetWaitForWarmOnInit().GetValue() {
		errs = append(errs, configerr.At(path+".wait_for_warm_on_init", "false is %s", configerr.NotSupported))
	}
	errs = append(errs, c.parseCircuitBreakers(cfg, path)...)
	errs = append(errs, c.parseCommonLB(cfg, path)...)
	errs = append(errs, c.parseConnectionOptions(cfg, path)...)
	errs = append(errs, c.parseHealthChecks(cfg, path)...)
	errs = append(errs, c.parseOutlierDetection(cfg, path)...)
	errs = append(errs, c.parseTransportSocket(cfg, path, env)...)

	d, derr := buildDiscovery(cfg, path, env)
	errs = append(errs, configerr.Collect(derr, path, nil)...)
	c.discovery = d
	p, perr := buildPolicy(cfg, path, env.seed(), env.now)
	errs = append(errs, configerr.Collect(perr, path, nil)...)
	c.policy = p
	errs = append(errs, c.parseLocalityLB(cfg, path, env.seed())...)

	if len(errs) > 0 {
		return nil, errs, warns
	}
	c.Stats = newStats(env.store.Scope("cluster." + c.observabilityName + "."))
	c.resources = newResourceManagers(env.store.Scope("cluster."+c.observabilityName+"."), c.thresholds, c.breakers)
	c.retryStats = newRetryStats(env.store.Scope("cluster." + c.observabilityName + "."))
	if c.hcConfig != nil {
		c.hcStats = healthcheck.NewStats(env.store.Scope("cluster." + c.observabilityName + ".health_check."))
	}
	c.buildOutlierDetector(env.store)
	c.hostSet.Store(c.newHostSet(nil))
	return c, nil, warns
}

// clusterWarnings lists what herald accepts but ignores, each a warning
// the server logs at load (Manager.Warnings). Nothing is accepted that way
// today: outlier_detection, the last such field, is implemented (#4).
func clusterWarnings(*clusterv3.Cluster, string) configerr.List { return nil }

// parseHealthChecks builds the cluster's active health check. Envoy runs
// one checker per entry, all setting the same host flags; herald runs one.
func (c *Cluster) parseHealthChecks(cfg *clusterv3.Cluster, path string) configerr.List {
	hcs := cfg.GetHealthChecks()
	if len(hcs) == 0 {
		return nil
	}
	var errs configerr.List
	if len(hcs) > 1 {
		errs = append(errs, configerr.At(path+".health_checks[1]", "more than one health check per cluster is %s", configerr.NotSupported))
	}
	hc, herrs := healthcheck.Build(hcs[0], path+".health_checks[0]", c.name)
	c.hcConfig = hc
	return append(errs, herrs...)
}

// parseCircuitBreakers reads circuit_breakers.thresholds. Envoy: "If
// multiple Thresholds are defined with the same RoutingPriority, the first
// one in the list is used. If no Thresholds is defined for a given
// RoutingPriority, the default values are used."
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/cluster/v3/circuit_breaker.proto).
func (c *Cluster) parseCircuitBreakers(cfg *clusterv3.Cluster, path string) configerr.List {
	cb := cfg.GetCircuitBreakers()
	if cb == nil {
		return nil
	}
	p := path + ".circuit_breakers"
	errs := configerr.CheckFields(cb, p, "thresholds")
	var seen [2]bool
	for i, t := range cb.GetThresholds() {
		tp := fmt.Sprintf("%s.thresholds[%d]", p, i)
		errs = append(errs, configerr.CheckFields(t, tp, "priority", "max_connections", "max_pending_requests",
			"max_requests", "max_retries", "track_remaining", "max_connection_pools", "retry_budget")...)
		prio := PriorityDefault
		if t.GetPriority() == corev3.RoutingPriority_HIGH {
			prio = PriorityHigh
		}
		if seen[prio] {
			continue
		}
		seen[prio] = true
		th := defaultThresholds
		if v := t.GetMaxConnections(); v != nil {
			th.MaxConnections = v.GetValue()
		}
		if v := t.GetMaxPendingRequests(); v != nil {
			th.MaxPendingRequests = v.GetValue()
		}
		if v := t.GetMaxRequests(); v != nil {
			th.MaxRequests = v.GetValue()
		}
		if v := t.GetMaxRetries(); v != nil {
			th.MaxRetries = v.GetValue()
		}
		c.thresholds[prio] = th
		var ep configerr.List
		c.breakers[prio], ep = parseBreakerOptions(t, tp)
		errs = append(errs, ep...)
	}
	return errs
}

func (c *Cluster) parseCommonLB(cfg *clusterv3.Cluster, path string) configerr.List {
	cl := cfg.GetCommonLbConfig()
	if cl == nil {
		return nil
	}
	// update_merge_window only batches EDS/health updates; accepting it
	// changes nothing herald does.
	// consistent_hashing_lb_config is read by buildPolicy for RING_HASH and
	// MAGLEV (and has no effect on other policies, as in Envoy).
	// locality_weighted_lb_config and zone_aware_lb_config are read by
	// parseLocalityLB.
	errs := configerr.CheckFields(cl, path+".common_lb_config", "healthy_panic_threshold", "update_merge_window", "consistent_hashing_lb_config",
		"locality_weighted_lb_config", "zone_aware_lb_config")
	if t := cl.GetHealthyPanicThreshold(); t != nil {
		c.panicThreshold = t.GetValue()
	}
	return errs
}

func (c *Cluster) parseConnectionOptions(cfg *clusterv3.Cluster, path string) configerr.List {
	uco := cfg.GetUpstreamConnectionOptions()
	if uco == nil {
		return nil
	}
	p := path + ".upstream_connection_options"
	errs := configerr.CheckFields(uco, p, "tcp_keepalive")
	if ka := uco.GetTcpKeepalive(); ka != nil {
		// Unset fields keep the OS default (Envoy), which Go spells -1.
		kc := &net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}
		if v := ka.GetKeepaliveTime(); v != nil {
			kc.Idle = time.Duration(v.GetValue()) * time.Second
		}
		if v := ka.GetKeepaliveInterval(); v != nil {
			kc.Interval = time.Duration(v.GetValue()) * time.Second
		}
		if v := ka.GetKeepaliveProbes(); v != nil {
			kc.Count = int(v.GetValue())
		}
		c.keepAlive = kc
	}
	return errs
}

// start runs discovery; ctx ends when the cluster is removed or the manager
// closes.
func (c *Cluster) start(ctx context.Context) {
	ctx, c.cancel = context.WithCancel(ctx)
	if c.hcConfig != nil {
		c.hc = healthcheck.NewRunner(healthcheck.Options{
			Cluster:  c.name,
			Config:   c.hcConfig,
			Stats:    c.hcStats,
			Dial:     c.healthCheckDial,
			Rand:     c.rand,
			Traffic:  c.hadTraffic,
			OnChange: c.rebuildHostSet,
			OnCheck:  c.outlierHealthChecked,
		})
	}
	if c.od != nil {
		c.od.Start()
	}
	c.discovery.Start(ctx, (*updater)(c))
}

// healthCheckDial connects a health check: bounded by connect_timeout (and
// the check's timeout through ctx), not counted in the cluster's
// connection stats, as Envoy's health check connections are not pool
// connections.
func (c *Cluster) healthCheckDial(ctx context.Context, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	conn, err := c.dial(dctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if c.transport != nil {
		// Envoy's health checks use the cluster's transport socket.
		return c.secure(dctx, conn)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return conn, nil
}

// hadTraffic is what Envoy's HealthCheckerImplBase::interval asks before
// choosing no_traffic_interval: has the cluster ever opened a connection or
// moved a byte.
func (c *Cluster) hadTraffic() bool {
	s := c.Stats
	return s.UpstreamCxTotal.Used() || s.UpstreamCxTxBytesTotal.Used() || s.UpstreamCxRxBytesTotal.Used()
}

// rebuildHostSet republishes the host set after health flags changed, so
// the picker skips failed hosts and takes recovered ones back.
func (c *Cluster) rebuildHostSet() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	hs := c.newHostSet(slices.Clip(c.hosts))
	c.hostSet.Store(hs)
	c.Stats.MembershipHealthy.Set(int64(hs.Healthy))
	c.mu.Unlock()
}

// stop ends discovery and drains the hosts' connection pools: idle
// connections close now, busy HTTP/2 and HTTP/3 connections when their
// last stream ends, busy HTTP/1.1 ones when their request ends (retirePools).
func (c *Cluster) stop() {
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Lock()
	c.stopped = true
	hosts := c.hosts
	c.mu.Unlock()
	if c.hc != nil {
		c.hc.Stop()
	}
	if c.od != nil {
		c.od.Stop()
	}
	for _, h := range hosts {
		h.retirePools()
	}
}

// Ready is closed when initial discovery is done and, with health_checks,
// every host found by it has had its first health check (Envoy's cluster
// warming: ClusterImplBase::onPreInitComplete waits for the first round).
func (c *Cluster) Ready() <-chan struct{} { return c.ready }

// updater is how discovery reports to its cluster.
type updater Cluster

var _ clustertype.Updater = (*updater)(nil)

func (u *updater) Attempt() { u.Stats.UpdateAttempt.Inc() }

func (u *updater) Failure(err error) {
	u.Stats.UpdateFailure.Inc()
	slog.Debug("cluster update failed, keeping hosts", "cluster", u.name, "error", err)
}

func (u *updater) Ready() {
	c := (*Cluster)(u)
	markReady := func() { c.readyOne.Do(func() { close(c.ready) }) }
	if c.hc == nil {
		markReady()
		return
	}
	c.hc.Initialize(markReady)
}

// Success counts update_success and replaces membership (SetHosts).
func (u *updater) Success(specs []clustertype.HostSpec) {
	u.Stats.UpdateSuccess.Inc()
	u.SetHosts(specs)
}

var _ clustertype.MembershipSetter = (*updater)(nil)

// SetHosts replaces membership: hosts with a known key are reused (their
// address, weight and EDS health updated), new ones created, missing ones
// dropped and their connection pools drained (retirePools). It implements
// clustertype.MembershipSetter.
func (u *updater) SetHosts(specs []clustertype.HostSpec) {
	c := (*Cluster)(u)
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	next := make([]*Host, 0, len(specs))
	nextByKey := make(map[string]*Host, len(specs))
	changed := len(specs) != len(c.hosts)
	for _, s := range specs {
		key := s.Key
		if key == "" {
			key = s.Addr.String()
		}
		if _, dup := nextByKey[key]; dup {
			continue
		}
		h := c.byKey[key]
		if h == nil {
			h = c.newHost(key, s)
			changed = true
		} else {
			if h.AddrPort() != s.Addr || h.Weight() != s.Weight {
				changed = true
			}
			h.setAddr(s.Addr)
			h.weight.Store(max(s.Weight, 1))
			if h.setEDSHealth(s.Unhealthy) {
				changed = true
			}
			if h.setPlacement(s.Placement) {
				changed = true // priority or locality moved (EDS)
			}
		}
		if !changed && c.hosts[len(next)] != h {
			changed = true // same members, new order
		}
		next = append(next, h)
		nextByKey[key] = h
	}
	var removed []*Host
	for k, h := range c.byKey {
		if nextByKey[k] == nil {
			removed = append(removed, h)
		}
	}
	if !changed && len(removed) == 0 {
		c.mu.Unlock()
		c.Stats.UpdateNoRebuild.Inc()
		return
	}
	c.hosts, c.byKey = next, nextByKey
	hs := c.newHostSet(slices.Clip(next))
	c.hostSet.Store(hs)
	if c.hc != nil {
		// Envoy's onClusterMemberUpdate: added hosts get a checker, removed
		// ones lose theirs. SetHosts does not block.
		ts := make([]healthcheck.Target, len(next))
		for i, h := range next {
			ts[i] = (*hcTarget)(h)
		}
		c.hc.SetHosts(ts)
	}
	c.outlierSetHosts(next)
	// Under mu, so a concurrent health rebuild cannot be overwritten by an
	// older count.
	c.Stats.MembershipTotal.Set(int64(len(hs.Hosts)))
	c.Stats.MembershipHealthy.Set(int64(hs.Healthy))
	c.mu.Unlock()

	c.Stats.MembershipChange.Inc()
	for _, h := range removed {
		h.retirePools()
	}
}

func (c *Cluster) newHost(key string, s clustertype.HostSpec) *Host {
	h := &Host{key: key, hostname: s.Hostname, hashKey: s.HashKey, cluster: c}
	if c.hcConfig != nil {
		// Envoy: "If we are depending on a health checker, we initialize to
		// unhealthy" (updateDynamicHostList); the first passing check
		// clears it.
		h.health.Store(uint32(FailedActiveHC))
	}
	h.setEDSHealth(s.Unhealthy)
	h.setPlacement(s.Placement)
	h.setAddr(s.Addr)
	h.weight.Store(max(s.Weight, 1))
	h.idle.init(c.http.idleTimeout, int(c.thresholds[0].MaxConnections), c.now)
	c.attachOutlierMonitor(h)
	return h
}
