package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/herald-proxy/herald/internal/stats"
)

// Reconnect backoff of a config stream. Envoy: SubscriptionFactory
// RetryInitialDelayMs = 500, RetryMaxDelayMs = 30000
// (envoy/config/subscription_factory.h), JitteredExponentialBackOffStrategy:
// each wait is uniform in [0, interval), the interval doubling from the base
// up to the max, reset when a response arrives (grpc_stream.h).
const (
	backoffBase = 500 * time.Millisecond
	backoffMax  = 30 * time.Second
)

// maxErrorDetail bounds error_detail.message; Envoy truncates it to 4 KiB
// (truncateGrpcStatusMessage) so a NACK stays a small message.
const maxErrorDetail = 4096

// Control-plane stat names
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/overview/mgmt_server#statistics).
const statConnectedState = "connected_state"

type backoffConfig struct{ base, max time.Duration }

// jitteredBackoff is Envoy's JitteredExponentialBackOffStrategy.
type jitteredBackoff struct {
	cfg  backoffConfig
	next time.Duration
}

func (b *jitteredBackoff) nextDelay() time.Duration {
	d := b.next
	if b.next < b.cfg.max/2 {
		b.next *= 2
	} else {
		b.next = b.cfg.max
	}
	return time.Duration(rand.Int64N(int64(d)))
}

func (b *jitteredBackoff) reset() { b.next = b.cfg.base }

// Mux is one gRPC xDS stream to a management server: ADS carries every
// resource type on one stream (AggregatedDiscoveryService); a per-type
// api_config_source gets a Mux of its own for its one type. State of the
// world (api_type GRPC) or delta (DELTA_GRPC).
type Mux struct {
	// Immutable after newMux:
	delta         bool
	ads           bool
	typeURL       string // per-type streams only
	node          *corev3.Node
	nodeFirstOnly bool
	target        string
	dialOpts      []grpc.DialOption
	md            metadata.MD
	connected     *stats.Gauge
	log           *slog.Logger
	bo            backoffConfig

	kick chan struct{} // interest changed; buffered 1

	mu      sync.Mutex
	types   map[string]*typeState
	cancel  context.CancelFunc
	done    chan struct{}
	started bool
}

// typeState is one resource type on a Mux. watches and dirty are guarded by
// Mux.mu; the rest is owned by the stream goroutine.
type typeState struct {
	url     string
	watches []*watch
	dirty   bool

	version string               // last accepted version_info (SotW sends it back in requests)
	nonce   string               // last nonce received on this stream
	cache   map[string]*Resource // last accepted resources
	sent    map[string]bool      // delta: names subscribed on this stream ("*" for wildcard)
}

// interest is the union of the watches' names; wildcard when any watch
// has none.
func (ts *typeState) interest() (names map[string]bool, wildcard bool) {
	names = map[string]bool{}
	for _, w := range ts.watches {
		n := w.interest()
		if len(n) == 0 {
			wildcard = true
		}
		for k := range n {
			names[k] = true
		}
	}
	return names, wildcard
}

var _ source = (*Mux)(nil)

func newMux(api *corev3.ApiConfigSource, typeURL string, opts Options, scope stats.Scope, ads bool) (*Mux, error) {
	m := &Mux{
		ads:           ads,
		typeURL:       typeURL,
		node:          opts.Node,
		nodeFirstOnly: api.GetSetNodeOnFirstMessageOnly(),
		connected:     scope.Gauge(statConnectedState),
		log:           opts.Logger.With("component", "xds"),
		bo:            backoffConfig{base: backoffBase, max: backoffMax},
		kick:          make(chan struct{}, 1),
		types:         map[string]*typeState{},
	}
	if opts.backoff != nil {
		m.bo = *opts.backoff
	}
	switch api.GetApiType() {
	case corev3.ApiConfigSource_GRPC:
	case corev3.ApiConfigSource_DELTA_GRPC:
		m.delta = true
	case corev3.ApiConfigSource_REST:
		return nil, errors.New("api_type: REST is not supported by herald yet (use GRPC or DELTA_GRPC)")
	default:
		return nil, fmt.Errorf("api_type: %s is not supported by herald yet (use GRPC or DELTA_GRPC)", api.GetApiType())
	}
	// Envoy: Utility::checkTransportVersion.
	if api.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		return nil, errors.New("transport_api_version: V2 (and AUTO) xDS transport protocol versions are not supported, set V3")
	}
	if len(api.GetClusterNames()) > 0 {
		return nil, errors.New("cluster_names: must not be set for gRPC (use grpc_services)")
	}
	if len(api.GetGrpcServices()) != 1 {
		return nil, fmt.Errorf("grpc_services: exactly one gRPC service must be given, got %d", len(api.GetGrpcServices()))
	}
	if api.GetRateLimitSettings() != nil {
		return nil, errors.New("rate_limit_settings: not supported by herald yet")
	}
	if len(api.GetConfigValidators()) > 0 {
		return nil, errors.New("config_validators: not supported by herald yet")
	}
	if !ads && streamOpeners[typeURL] == nil {
		return nil, fmt.Errorf("no discovery service for type %s", typeURL)
	}
	if opts.Node == nil {
		return nil, errors.New("node: required for gRPC xDS")
	}
	if err := m.grpcService(api.GetGrpcServices()[0], opts); err != nil {
		return nil, fmt.Errorf("grpc_services[0].%w", err)
	}
	return m, nil
}

// grpcService interprets envoy_grpc / google_grpc into a target and dial
// options.
func (m *Mux) grpcService(gs *corev3.GrpcService, opts Options) error {
	if gs.GetRetryPolicy() != nil {
		return errors.New("retry_policy: not supported by herald yet")
	}
	for _, h := range gs.GetInitialMetadata() {
		if m.md == nil {
			m.md = metadata.MD{}
		}
		m.md.Append(h.GetKey(), h.GetValue())
	}
	m.dialOpts = []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		// The channel's own reconnect follows the stream backoff's bounds.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{
			BaseDelay: m.bo.base, Multiplier: 2, Jitter: 0.2, MaxDelay: m.bo.max,
		}, MinConnectTimeout: 5 * time.Second}),
	}
	switch t := gs.GetTargetSpecifier().(type) {
	case *corev3.GrpcService_EnvoyGrpc_:
		eg := t.EnvoyGrpc
		if opts.DialCluster == nil {
			return errors.New("envoy_grpc: no cluster dialer (internal error)")
		}
		if eg.GetRetryPolicy() != nil {
			return errors.New("envoy_grpc.retry_policy: not supported by herald yet")
		}
		cluster, dial := eg.GetClusterName(), opts.DialCluster
		m.target = "passthrough:///" + cluster
		m.dialOpts = append(m.dialOpts, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return dial(ctx, cluster)
		}))
		// Envoy: authority defaults to the cluster name.
		authority := cluster
		if a := eg.GetAuthority(); a != "" {
			authority = a
		}
		m.dialOpts = append(m.dialOpts, grpc.WithAuthority(authority))
		if n := eg.GetMaxReceiveMessageLength(); n != nil && n.GetValue() > 0 {
			m.dialOpts = append(m.dialOpts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(int(n.GetValue()))))
		}
	case *corev3.GrpcService_GoogleGrpc_:
		gg := t.GoogleGrpc
		switch {
		case gg.GetChannelCredentials() != nil:
			return errors.New("google_grpc.channel_credentials: not supported by herald yet")
		case len(gg.GetCallCredentials()) > 0:
			return errors.New("google_grpc.call_credentials: not supported by herald yet")
		case gg.GetCredentialsFactoryName() != "":
			return errors.New("google_grpc.credentials_factory_name: not supported by herald yet")
		case gg.GetChannelArgs() != nil:
			return errors.New("google_grpc.channel_args: not supported by herald yet")
		}
		m.target = gg.GetTargetUri()
	default:
		return errors.New("target_specifier: one of envoy_grpc or google_grpc is required")
	}
	return nil
}

// Start connects and keeps the stream up, with backoff, until ctx ends or
// Close is called.
func (m *Mux) Start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return
	}
	m.started = true
	ctx, m.cancel = context.WithCancel(ctx)
	m.done = make(chan struct{})
	go m.run(ctx)
}

// Close stops the stream and waits for its goroutines.
func (m *Mux) Close() {
	m.mu.Lock()
	cancel, done := m.cancel, m.done
	m.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// attach implements source.
func (m *Mux) attach(ctx context.Context, w *watch) {
	m.mu.Lock()
	ts := m.types[w.typeURL]
	if ts == nil {
		ts = &typeState{url: w.typeURL, cache: map[string]*Resource{}}
		m.types[w.typeURL] = ts
	}
	ts.watches = append(ts.watches, w)
	ts.dirty = true
	m.mu.Unlock()
	m.poke()
	if !m.ads {
		m.Start(ctx)
	}
}

// detach implements source.
func (m *Mux) detach(w *watch) {
	if !m.ads {
		m.Close()
		return
	}
	m.mu.Lock()
	if ts := m.types[w.typeURL]; ts != nil {
		for i, x := range ts.watches {
			if x == w {
				ts.watches = append(ts.watches[:i:i], ts.watches[i+1:]...)
				break
			}
		}
		ts.dirty = true
	}
	m.mu.Unlock()
	m.poke()
}

// interestChanged implements source.
func (m *Mux) interestChanged(w *watch) {
	m.mu.Lock()
	if ts := m.types[w.typeURL]; ts != nil {
		ts.dirty = true
	}
	m.mu.Unlock()
	m.poke()
}

func (m *Mux) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// run keeps a stream up until ctx ends.
func (m *Mux) run(ctx context.Context) {
	defer close(m.done)
	defer m.connected.Set(0)
	conn, err := grpc.NewClient(m.target, m.dialOpts...)
	if err != nil {
		// Only a malformed target gets here; it cannot heal.
		m.log.Error("xds: bad gRPC target", "target", m.target, "error", err)
		return
	}
	defer conn.Close()
	bo := &jitteredBackoff{cfg: m.bo, next: m.bo.base}
	var lastErr string
	for {
		var err error
		if m.delta {
			err = m.deltaSession(ctx, conn, bo)
		} else {
			err = m.sotwSession(ctx, conn, bo)
		}
		m.connected.Set(0)
		if ctx.Err() != nil {
			return
		}
		// Like Envoy's GrpcStream::logClose: the same failure again is
		// logged at debug, a new one at warn.
		if bo.next == m.bo.base {
			lastErr = "" // the stream had delivered responses: a new episode
		}
		if msg := fmt.Sprint(err); msg != lastErr {
			m.log.Warn("xds: stream closed", "target", m.target, "error", err)
			lastErr = msg
		} else {
			m.log.Debug("xds: stream closed", "target", m.target, "error", err)
		}
		for _, ts := range m.snapshot() {
			for _, w := range ts.watches {
				w.connectionFailed()
			}
		}
		t := time.NewTimer(bo.nextDelay())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// tsView is a typeState with a copy of its watches, taken under mu.
type tsView struct {
	*typeState
	watches []*watch
}

// snapshot returns the types in Envoy's request order (CDS, EDS, LDS, RDS,
// ...). It does not clear their dirty flags: callers take those with
// dirtyTypes first.
func (m *Mux) snapshot() []tsView {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]tsView, 0, len(m.types))
	for _, ts := range m.types {
		out = append(out, tsView{typeState: ts, watches: append([]*watch(nil), ts.watches...)})
	}
	sort.Slice(out, func(i, j int) bool {
		oi, iok := requestOrder[out[i].url]
		oj, jok := requestOrder[out[j].url]
		switch {
		case iok && jok:
			return oi < oj
		case iok != jok:
			return iok
		}
		return out[i].url < out[j].url
	})
	return out
}

// dirtyTypes returns the types whose interest changed and clears the flags;
// types left without watches are dropped from the Mux.
func (m *Mux) dirtyTypes() []tsView {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []tsView
	for url, ts := range m.types {
		if !ts.dirty {
			continue
		}
		ts.dirty = false
		out = append(out, tsView{typeState: ts, watches: append([]*watch(nil), ts.watches...)})
		if len(ts.watches) == 0 {
			delete(m.types, url)
		}
	}
	return out
}

func (m *Mux) lookup(url string) (tsView, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts := m.types[url]
	if ts == nil {
		return tsView{}, false
	}
	return tsView{typeState: ts, watches: append([]*watch(nil), ts.watches...)}, true
}

// recvLoop reads a stream until it fails, handing messages to out.
func recvLoop[T any](ctx context.Context, recv func() (T, error), out chan<- T, errc chan<- error) {
	for {
		msg, err := recv()
		if err != nil {
			errc <- err
			return
		}
		select {
		case out <- msg:
		case <-ctx.Done():
			return
		}
	}
}

// errorDetail is the NACK's google.rpc.Status. Envoy: code INTERNAL and the
// exception text, truncated (GrpcMuxImpl::onDiscoveryResponse).
func errorDetail(err error) *statuspb.Status {
	msg := err.Error()
	if len(msg) > maxErrorDetail {
		msg = msg[:maxErrorDetail]
	}
	// google.rpc.Status.message is a proto3 string: a cut inside a
	// multi-byte character would make the NACK fail to encode and tear the
	// stream down.
	msg = strings.ToValidUTF8(msg, "")
	return &statuspb.Status{Code: int32(codes.Internal), Message: msg}
}

// mergeDecoded builds the next cache from base and decoded resources,
// reusing the *Resource of every byte-identical one.
func mergeDecoded(base, old map[string]*Resource, ds []decoded, version string, now time.Time) map[string]*Resource {
	for _, d := range ds {
		if r, ok := old[d.name]; ok && sameAny(r.Any, d.any) && (d.version == "" || d.version == r.Version) {
			base[d.name] = r
			continue
		}
		v := d.version
		if v == "" {
			v = version
		}
		base[d.name] = &Resource{Name: d.name, Version: v, Message: d.msg, Any: d.any, LastUpdated: now}
	}
	return base
}

// primeNew hands the cached resources of a type to the watches that joined
// it after this stream received them and hold a name among them (or are
// wildcard): the server will not send those resources again, since the
// request's names did not change (SotW) or the name is already subscribed
// (delta) — a rebuilt EDS cluster on an ADS stream would otherwise wait for
// its initial_fetch_timeout. A watch whose names are all new keeps waiting
// for the server's response. Called on the stream goroutine.
func primeNew(v tsView) {
	if len(v.cache) == 0 {
		return
	}
	for _, w := range v.watches {
		if w.primed() {
			continue
		}
		names := w.interest()
		has := len(names) == 0
		for n := range names {
			if v.cache[n] != nil {
				has = true
				break
			}
		}
		if has {
			_ = w.deliver(v.version, v.cache) // a rejection is recorded by the watch
		}
	}
}

// deliverAll calls every watch; the first Apply error is returned.
func deliverAll(watches []*watch, version string, cache map[string]*Resource) error {
	var first error
	for _, w := range watches {
		if err := w.deliver(version, cache); err != nil && first == nil {
			first = err
		}
	}
	return first
}
