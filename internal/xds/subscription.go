package xds

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/herald-proxy/herald/internal/stats"
)

// Update is what Apply receives: the complete current set of resources the
// subscription asked for, for SotW, delta and file sources alike (delta
// additions and removals are merged into the set before Apply is called).
type Update struct {
	// TypeURL is the resource type.
	TypeURL string
	// VersionInfo is the response's version_info (SotW, file) or
	// system_version_info (delta; informational only, often empty).
	VersionInfo string
	// Resources is every current resource matching the subscription's names
	// (all of the type for a wildcard subscription), sorted by name. A
	// resource unchanged since the previous Update is the same pointer.
	Resources []*Resource
	// Removed names the resources of the previous accepted Update that are
	// gone from Resources, sorted.
	Removed []string
}

// Callbacks is what a subscription calls.
type Callbacks struct {
	// Apply applies an update. It runs on the subscription's goroutine, one
	// update at a time, and must not call Stop. A non-nil error rejects the
	// update: for gRPC it is sent back as the NACK's error_detail (it should
	// name the resource and field, e.g. `cluster "a": lb_policy: ...`), the
	// previously accepted version stays, and the error is counted
	// (update_rejected) and kept for config_dump. Resources reaching Apply
	// have already passed their generated ValidateAll.
	Apply func(Update) error
}

// Subscription is one xDS subscription: a resource type and the names of
// interest, from one ConfigSource.
type Subscription interface {
	// Start begins fetching; the initial_fetch_timeout starts now. Fetching
	// stops when ctx ends or Stop is called. Start may be called once.
	Start(ctx context.Context)
	// UpdateResourceNames replaces the names of interest (RDS route config
	// names, EDS cluster names). Empty means wildcard (every resource of the
	// type), which is what LDS and CDS use.
	UpdateResourceNames(names []string)
	// Ready is closed after the first update was accepted or rejected, or
	// the initial_fetch_timeout passed, whichever comes first: Envoy's
	// "initialized" for the init manager.
	Ready() <-chan struct{}
	// Status is the subscription's state for config_dump.
	Status() Status
	// Stop ends the subscription and waits for its goroutines. Idempotent.
	Stop()
}

// Status is a subscription's state for admin /config_dump.
type Status struct {
	// TypeURL is the resource type.
	TypeURL string
	// VersionInfo is the version_info of the last accepted update.
	VersionInfo string
	// LastUpdated is when the last update was accepted; zero before.
	LastUpdated time.Time
	// Resources is the last accepted set, sorted by name.
	Resources []*Resource
	// Failure is the last rejected update, if it came after the last
	// accepted one (Envoy's UpdateFailureState); nil otherwise.
	Failure *UpdateFailure
	// Ready reports whether Ready() is closed.
	Ready bool
}

// UpdateFailure is a rejected update (admin.v3.UpdateFailureState).
type UpdateFailure struct {
	// VersionInfo is the rejected response's version_info.
	VersionInfo string
	// Details is the error, as sent in error_detail.
	Details string
	// LastUpdateAttempt is when it was rejected.
	LastUpdateAttempt time.Time
}

// Subscription stat names, as Envoy's
// https://www.envoyproxy.io/docs/envoy/latest/configuration/overview/mgmt_server#xds-subscription-statistics
// (update_empty as in Envoy before 1.21: an accepted update with no resources).
const (
	statConfigReload     = "config_reload"
	statInitFetchTimeout = "init_fetch_timeout"
	statUpdateAttempt    = "update_attempt"
	statUpdateSuccess    = "update_success"
	statUpdateFailure    = "update_failure"
	statUpdateRejected   = "update_rejected"
	statUpdateEmpty      = "update_empty"
	statUpdateTime       = "update_time"
	statVersion          = "version"
)

type subStats struct {
	configReload, initFetchTimeout, updateAttempt, updateSuccess *stats.Counter
	updateFailure, updateRejected, updateEmpty                   *stats.Counter
	updateTime, version                                          *stats.Gauge
}

func newSubStats(sc stats.Scope) subStats {
	return subStats{
		configReload:     sc.Counter(statConfigReload),
		initFetchTimeout: sc.Counter(statInitFetchTimeout),
		updateAttempt:    sc.Counter(statUpdateAttempt),
		updateSuccess:    sc.Counter(statUpdateSuccess),
		updateFailure:    sc.Counter(statUpdateFailure),
		updateRejected:   sc.Counter(statUpdateRejected),
		updateEmpty:      sc.Counter(statUpdateEmpty),
		updateTime:       sc.Gauge(statUpdateTime),
		version:          sc.Gauge(statVersion),
	}
}

// source feeds watches: a gRPC Mux or a file.
type source interface {
	// attach starts delivering to w (starting the source if it is private).
	attach(ctx context.Context, w *watch)
	// detach stops delivering to w (stopping a private source).
	detach(w *watch)
	// interestChanged tells the source that w's names changed.
	interestChanged(w *watch)
}

// watch implements Subscription on top of a source.
type watch struct {
	typeURL     string
	cb          Callbacks
	stats       subStats
	initTimeout time.Duration // 0: none
	src         source
	log         *slog.Logger
	now         func() time.Time

	ready     chan struct{}
	readyOnce sync.Once
	startOnce sync.Once
	stopOnce  sync.Once

	mu        sync.Mutex
	names     map[string]bool // empty: wildcard
	timer     *time.Timer
	delivered map[string]*Resource // last accepted set; written on the source goroutine
	version   string
	updated   time.Time
	failure   *UpdateFailure
}

var _ Subscription = (*watch)(nil)

func newWatch(typeURL string, names []string, cb Callbacks, sc stats.Scope, initTimeout time.Duration, src source, log *slog.Logger) *watch {
	w := &watch{
		typeURL:     typeURL,
		cb:          cb,
		stats:       newSubStats(sc),
		initTimeout: initTimeout,
		src:         src,
		log:         log.With("type", kindOf(typeURL)),
		now:         time.Now,
		ready:       make(chan struct{}),
		delivered:   map[string]*Resource{},
	}
	w.names = nameSet(names)
	return w
}

func nameSet(names []string) map[string]bool {
	s := make(map[string]bool, len(names))
	for _, n := range names {
		if n != "" && n != "*" {
			s[n] = true
		}
	}
	return s
}

// Start implements Subscription.
func (w *watch) Start(ctx context.Context) {
	w.startOnce.Do(func() {
		if w.initTimeout > 0 {
			w.mu.Lock()
			w.timer = time.AfterFunc(w.initTimeout, w.fetchTimedOut)
			w.mu.Unlock()
		}
		w.src.attach(ctx, w)
	})
}

// Stop implements Subscription.
func (w *watch) Stop() {
	w.stopOnce.Do(func() {
		w.mu.Lock()
		if w.timer != nil {
			w.timer.Stop()
		}
		w.mu.Unlock()
		w.src.detach(w)
	})
}

// UpdateResourceNames implements Subscription.
func (w *watch) UpdateResourceNames(names []string) {
	w.mu.Lock()
	w.names = nameSet(names)
	w.mu.Unlock()
	w.src.interestChanged(w)
}

// Ready implements Subscription.
func (w *watch) Ready() <-chan struct{} { return w.ready }

// Status implements Subscription.
func (w *watch) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := Status{TypeURL: w.typeURL, VersionInfo: w.version, LastUpdated: w.updated, Resources: sortedResources(w.delivered)}
	if w.failure != nil {
		f := *w.failure
		st.Failure = &f
	}
	select {
	case <-w.ready:
		st.Ready = true
	default:
	}
	return st
}

// primed reports whether the watch has had an update accepted or rejected.
func (w *watch) primed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return !w.updated.IsZero() || w.failure != nil
}

// interest returns a copy of the names of interest; empty is wildcard.
func (w *watch) interest() map[string]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]bool, len(w.names))
	for n := range w.names {
		out[n] = true
	}
	return out
}

func (w *watch) markReady() {
	w.readyOnce.Do(func() {
		w.mu.Lock()
		if w.timer != nil {
			w.timer.Stop()
		}
		w.mu.Unlock()
		close(w.ready)
	})
}

// fetchTimedOut is Envoy's initial_fetch_timeout: the subscription counts
// as initialized without data
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/config_source.proto#envoy-v3-api-field-config-core-v3-configsource-initial-fetch-timeout).
func (w *watch) fetchTimedOut() {
	select {
	case <-w.ready:
		return
	default:
	}
	w.stats.initFetchTimeout.Inc()
	w.log.Warn("xds: initial fetch timed out", "timeout", w.initTimeout)
	w.markReady()
}

// connectionFailed counts a stream failure (Envoy: update_attempt and
// update_failure, "failed because of network errors").
func (w *watch) connectionFailed() {
	w.stats.updateAttempt.Inc()
	w.stats.updateFailure.Inc()
}

// deliver offers the source's current cache to the watch: it selects the
// resources of interest and calls Apply. Called on the source goroutine.
func (w *watch) deliver(version string, cache map[string]*Resource) error {
	names := w.interest()
	view := make(map[string]*Resource, len(cache))
	for n, r := range cache {
		if len(names) == 0 || names[n] {
			view[n] = r
		}
	}
	w.mu.Lock()
	prev := w.delivered
	w.mu.Unlock()
	var removed []string
	changed := len(view) != len(prev)
	for n, r := range prev {
		nr, ok := view[n]
		if !ok {
			removed = append(removed, n)
		}
		if nr != r {
			changed = true
		}
	}
	sort.Strings(removed)
	w.stats.updateAttempt.Inc()
	err := w.cb.Apply(Update{TypeURL: w.typeURL, VersionInfo: version, Resources: sortedResources(view), Removed: removed})
	if err != nil {
		w.reject(version, err)
		return err
	}
	now := w.now()
	w.mu.Lock()
	w.delivered, w.version, w.updated, w.failure = view, version, now, nil
	w.mu.Unlock()
	w.stats.updateSuccess.Inc()
	if len(view) == 0 {
		w.stats.updateEmpty.Inc()
	}
	if changed {
		w.stats.configReload.Inc()
	}
	w.stats.updateTime.Set(now.UnixMilli())
	// Envoy: version is the xxHash64 of version_info.
	w.stats.version.Set(int64(xxhash.Sum64String(version)))
	w.markReady()
	return nil
}

// reject records a rejected update (bad resource or Apply error).
func (w *watch) reject(version string, err error) {
	w.mu.Lock()
	w.failure = &UpdateFailure{VersionInfo: version, Details: err.Error(), LastUpdateAttempt: w.now()}
	w.mu.Unlock()
	w.stats.updateRejected.Inc()
	w.log.Warn("xds: update rejected", "version", version, "error", err)
	w.markReady()
}

// rejectUndelivered counts an update that failed before Apply (decoding or
// validation).
func (w *watch) rejectUndelivered(version string, err error) {
	w.stats.updateAttempt.Inc()
	w.reject(version, err)
}

func sortedResources(m map[string]*Resource) []*Resource {
	out := make([]*Resource, 0, len(m))
	for _, n := range sortedNames(m) {
		out = append(out, m[n])
	}
	return out
}
