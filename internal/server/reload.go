package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-proxy/herald/internal/admin"
	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/filewatch"
	"github.com/herald-proxy/herald/internal/stats"
)

// Reload triggers, as /reload_status reports them.
const (
	TriggerSIGHUP = "SIGHUP"
	TriggerWatch  = "watch"
)

// reloadWarmTimeout bounds how long a reload waits for new and changed
// clusters to warm before it swaps them in anyway: Envoy's default
// initial_fetch_timeout, after which a warming cluster is used with what it
// has (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/config_source.proto#envoy-v3-api-field-config-core-v3-configsource-initial-fetch-timeout).
const reloadWarmTimeout = 15 * time.Second

// herald's reload stats (Envoy has no static reload; its names for the
// listener and cluster managers are emitted by Apply).
const (
	statReloadSuccess    = "herald.config_reload.success"
	statReloadFailure    = "herald.config_reload.failure"
	statReloadLastFailed = "herald.config_reload.last_failed"
)

type reloadStats struct {
	success, failure *stats.Counter
	// lastFailed is 1 while the last reload was rejected (alert on it).
	lastFailed *stats.Gauge
}

func newReloadStats(st *stats.Store) reloadStats {
	return reloadStats{
		success:    st.Counter(statReloadSuccess),
		failure:    st.Counter(statReloadFailure),
		lastFailed: st.Gauge(statReloadLastFailed),
	}
}

// listenerManagerStats are Envoy's listener_manager.* stats
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/stats#listener-manager).
type listenerManagerStats struct {
	added, modified, removed *stats.Counter
	active, draining         *stats.Gauge
	// inPlaceUpdated counts filter-chain-only updates (also counted in
	// modified, as Envoy does); chainsDraining is the filter chains those
	// updates drain that still have connections.
	inPlaceUpdated *stats.Counter
	chainsDraining *stats.Gauge
}

func newListenerManagerStats(st *stats.Store) listenerManagerStats {
	return listenerManagerStats{
		added:    st.Counter("listener_manager.listener_added"),
		modified: st.Counter("listener_manager.listener_modified"),
		removed:  st.Counter("listener_manager.listener_removed"),
		active:   st.Gauge("listener_manager.total_listeners_active"),
		draining: st.Gauge("listener_manager.total_listeners_draining"),

		inPlaceUpdated: st.Counter("listener_manager.listener_in_place_updated"),
		chainsDraining: st.Gauge("listener_manager.total_filter_chains_draining"),
	}
}

// staticResources are a bootstrap's static_resources as Apply takes them,
// with errors positioned in the file.
func staticResources(cfg *bootstrap.Config) Resources {
	sr := cfg.Bootstrap.GetStaticResources()
	return Resources{
		Listeners:    sr.GetListeners(),
		Clusters:     sr.GetClusters(),
		ListenerPath: func(i int) string { return fmt.Sprintf("static_resources.listeners[%d]", i) },
		ClusterPath:  func(i int) string { return fmt.Sprintf("static_resources.clusters[%d]", i) },
		Locator:      cfg.Index,
	}
}

// Reload re-reads -c and --config-yaml and applies the result's
// static_resources with Apply's safe-update rules. A file that does not
// load, validate or build is rejected whole: the running configuration
// keeps serving, and the loader's file:line:col errors are logged, counted
// (herald.config_reload.failure) and shown on /reload_status. Fields outside
// static_resources (admin, node, stats, …) cannot change at runtime: a change
// there is kept out of the running config and reported as a warning that a
// restart is needed.
func (s *Server) Reload(ctx context.Context, trigger string) error {
	changes, warnings, err := s.reloadOnce(ctx)
	// Log and count first: whoever sees the new status also finds the
	// log line and the stats.
	if err != nil {
		s.log.Error("configuration reload rejected; the previous configuration keeps serving",
			"trigger", trigger, "error", errorText(err))
		s.reloadStats.failure.Inc()
		s.reloadStats.lastFailed.Set(1)
	} else {
		for _, w := range warnings {
			s.log.Warn("configuration reload: "+w, "trigger", trigger)
		}
		s.log.Info("configuration reloaded", "trigger", trigger,
			"listeners_added", changes.ListenersAdded, "listeners_modified", changes.ListenersModified,
			"listeners_removed", changes.ListenersRemoved, "clusters_added", changes.ClustersAdded,
			"clusters_modified", changes.ClustersModified, "clusters_removed", changes.ClustersRemoved)
		s.reloadStats.success.Inc()
		s.reloadStats.lastFailed.Set(0)
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reload.Time = now
	s.reload.Trigger = trigger
	s.reload.OK = err == nil
	s.reload.Warnings = warnings
	s.reload.Error = ""
	if err != nil {
		s.reload.Error = errorText(err)
		s.reload.Rejected++
		return err
	}
	s.reload.Applied++
	s.reload.LastApplied = now
	s.applied = now
	return nil
}

func (s *Server) reloadOnce(ctx context.Context) (Changes, []string, error) {
	cfg, err := bootstrap.Load(bootstrap.Options{Path: s.opts.ConfigPath, YAML: s.opts.ConfigYAML})
	if err != nil {
		return Changes{}, nil, err
	}
	applyNodeFlags(cfg.Bootstrap, s.opts)
	old := s.cfg.Load()
	fields := restartOnlyChanges(old.Bootstrap, cfg.Bootstrap)
	var warnings []string
	if len(fields) > 0 {
		warnings = append(warnings, fmt.Sprintf("changes to %s need a restart and were not applied", strings.Join(fields, ", ")))
	}
	// The dynamic (LDS/CDS) resources stay: the update is the new
	// static_resources plus the accepted xDS sets, under applyMu so that
	// the xDS applier cannot interleave an older bootstrap.
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	restore, changed, err := s.swapStaticSecrets(cfg)
	if err != nil {
		return Changes{}, nil, err
	}
	if changed {
		warnings = append(warnings, staticSecretsWarning)
	}
	m := mergeResources(staticResources(cfg), s.dyn.accepted())
	changes, err := s.applyLocked(ctx, m.res, reloadWarmTimeout)
	if err != nil {
		restore()
		return Changes{}, nil, err
	}
	s.cfg.Store(&bootstrap.Config{Bootstrap: keepRestartOnly(old.Bootstrap, cfg.Bootstrap), Index: cfg.Index})
	s.dyn.setApplied(m)
	return changes, warnings, nil
}

// errorText is an error as the loader prints it: one error per line.
func errorText(err error) string {
	var l configerr.List
	if errors.As(err, &l) {
		lines := make([]string, len(l))
		for i, e := range l {
			lines[i] = e.Error()
		}
		return strings.Join(lines, "\n")
	}
	return err.Error()
}

// restartOnlyChanges returns the top-level bootstrap fields, other than
// static_resources, whose value differs between old and next, in field
// order. A running herald applies only static_resources; the admin
// address, node identity and the rest are process settings.
func restartOnlyChanges(old, next *bootstrapv3.Bootstrap) []string {
	var out []string
	fields := old.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if fd.Name() == "static_resources" {
			continue
		}
		if !fieldEqual(old.ProtoReflect(), next.ProtoReflect(), fd) {
			out = append(out, string(fd.Name()))
		}
	}
	return out
}

func fieldEqual(a, b protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
	if a.Has(fd) != b.Has(fd) {
		return false
	}
	if !a.Has(fd) {
		return true
	}
	// Compare through single-field copies so that lists, maps and
	// messages all use proto.Equal.
	x, y := a.New(), b.New()
	x.Set(fd, a.Get(fd))
	y.Set(fd, b.Get(fd))
	return proto.Equal(x.Interface(), y.Interface())
}

// keepRestartOnly is next with every field but static_resources taken from
// old: the configuration that actually runs after a reload.
func keepRestartOnly(old, next *bootstrapv3.Bootstrap) *bootstrapv3.Bootstrap {
	out := proto.Clone(old).(*bootstrapv3.Bootstrap)
	out.StaticResources = next.GetStaticResources()
	return out
}

// handleSignals reloads on SIGHUP and reopens access logs on SIGUSR1
// (Envoy: "SIGUSR1: ... reopen all access logs", used for log rotation,
// https://www.envoyproxy.io/docs/envoy/latest/operations/hot_restarter).
// Envoy itself ignores SIGHUP; reloading on it is herald's.
func (s *Server) handleSignals(ctx context.Context, sigs <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case sig := <-sigs:
			switch sig {
			case syscall.SIGHUP:
				s.log.Info("SIGHUP: reloading the configuration")
				_ = s.Reload(ctx, TriggerSIGHUP)
			case syscall.SIGUSR1:
				s.ReopenLogs()
			}
		}
	}
}

// watchConfig polls -c every interval (stat follows symlinks, so a
// Kubernetes ConfigMap's ..data swap is seen) and reloads when it changes:
// a write in place, or an atomic rename over it. A file that is missing is
// not reloaded until it is back. --config-yaml is part of every reload.
func (s *Server) watchConfig(ctx context.Context, interval time.Duration) {
	path := s.opts.ConfigPath
	if path == "" {
		return
	}
	last := filewatch.Of([]string{path}, "")
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := os.Stat(path); err != nil {
			continue
		}
		cur := filewatch.Of([]string{path}, "")
		if cur.Equal(last) {
			continue
		}
		last = cur
		s.log.Info("configuration file changed: reloading", "path", path)
		_ = s.Reload(ctx, TriggerWatch)
	}
}

// ReloadStatus implements admin.Reloader.
func (s *Server) ReloadStatus() admin.ReloadStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.reload
	r.Warnings = slices.Clone(r.Warnings)
	return r
}

var _ admin.Reloader = (*Server)(nil)
