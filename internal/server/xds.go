package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/xds"
)

// xdsWarmTimeout bounds how long an LDS/CDS update waits for its new and
// changed clusters to warm (EDS, DNS, first health checks) before they are
// used as they are: Envoy's default initial_fetch_timeout, 15 s
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/config_source.proto#envoy-v3-api-field-config-core-v3-configsource-initial-fetch-timeout).
const xdsWarmTimeout = reloadWarmTimeout

// Subscription stat scopes, Envoy's: "LDS has a statistics tree rooted at
// listener_manager.lds." (configuration/listeners/lds), "CDS has a
// statistics tree rooted at cluster_manager.cds." (cluster_manager/cds).
const (
	ldsScope = "listener_manager.lds."
	cdsScope = "cluster_manager.cds."
)

// dynamicIssues names the issue for DynamicResources fields herald does not
// implement (xdstp:// collection locators).
var dynamicIssues = map[string]string{
	"lds_resources_locator": "#7",
	"cds_resources_locator": "#7",
}

// dynamic is the server's xDS side: the client, the LDS and CDS
// subscriptions, the sets they last delivered and were accepted, and the
// applier that makes those sets run.
//
// An LDS or CDS update is validated on the subscription's goroutine (built
// in full against the running configuration, nothing started) and ACKed or
// NACKed from that; the accepted set is then applied by one applier
// goroutine, with cluster warming. Applying on the subscription goroutine
// would deadlock on ADS: a warming EDS cluster waits for an EDS response
// the same stream's goroutine would have to deliver. Envoy also ACKs a CDS
// update before its clusters have warmed.
type dynamic struct {
	// Immutable after newDynamic:
	client   *xds.Client
	lds, cds xds.Subscription // nil when not configured
	kick     chan struct{}    // buffered 1: the accepted sets changed

	// updateMu serialises the LDS and CDS callbacks (per-type streams run
	// on their own goroutines) so each validates against the other's last
	// accepted set.
	updateMu sync.Mutex

	mu        sync.Mutex
	listeners []*xds.Resource // last accepted LDS set, sorted by name
	clusters  []*xds.Resource // last accepted CDS set, sorted by name
	gen       uint64          // bumped when an update is accepted
	applied   uint64          // the gen the applier last applied
	appliedCh chan struct{}   // closed when applied changes
	// apiClusters are the CDS clusters in the running set (added_via_api).
	apiClusters map[string]bool
	// running are the dynamic resources in the running set, for
	// config_dump: accepted and applied.
	running merged
}

// xdsSets are the accepted dynamic listeners and clusters.
type xdsSets struct {
	listeners, clusters []*xds.Resource
}

// accepted returns the accepted sets; empty for a nil d (tests, or a
// server without xDS).
func (d *dynamic) accepted() xdsSets {
	if d == nil {
		return xdsSets{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return xdsSets{listeners: d.listeners, clusters: d.clusters}
}

// setApplied records what runs after a successful apply.
func (d *dynamic) setApplied(m merged) {
	if d == nil {
		return
	}
	api := make(map[string]bool, len(m.clusters))
	for _, r := range m.clusters {
		api[r.Name] = true
	}
	d.mu.Lock()
	d.apiClusters = api
	d.running = m
	d.mu.Unlock()
}

// addedViaAPI reports whether the running cluster name came from CDS.
func (d *dynamic) addedViaAPI(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.apiClusters[name]
}

// newDynamic checks dynamic_resources and builds the xDS client and the
// LDS/CDS subscriptions (nothing connects before start). The client always
// exists: EDS clusters and RDS subscribe through it too.
func (s *Server) newDynamic(cfg *bootstrap.Config) (*dynamic, error) {
	dr := cfg.Bootstrap.GetDynamicResources()
	errs := configerr.RejectUnlisted(dr, "dynamic_resources", dynamicIssues, "lds_config", "cds_config", "ads_config")
	d := &dynamic{kick: make(chan struct{}, 1), appliedCh: make(chan struct{})}
	client, err := xds.NewClient(dr.GetAdsConfig(), xds.Options{
		Node:        cfg.Bootstrap.GetNode(),
		DialCluster: s.dialCluster,
		Stats:       s.store,
		Logger:      s.log,
	})
	if err != nil {
		errs = append(errs, configerr.At("dynamic_resources.ads_config", "%s", strings.TrimPrefix(err.Error(), "xds: ads_config: ")))
		return nil, configerr.Collect(errs, "", cfg.Index)
	}
	d.client = client
	subscribe := func(field string, src *corev3.ConfigSource, typeURL string, apply func(xds.Update) error, scope string) xds.Subscription {
		if src == nil {
			return nil
		}
		sub, err := client.Subscribe(src, typeURL, nil, xds.Callbacks{Apply: apply}, s.store.Scope(scope))
		if err != nil {
			errs = append(errs, configerr.At("dynamic_resources."+field, "%s", strings.TrimPrefix(err.Error(), "xds: ")))
			return nil
		}
		return sub
	}
	d.cds = subscribe("cds_config", dr.GetCdsConfig(), xds.ClusterType, s.onCDS, cdsScope)
	d.lds = subscribe("lds_config", dr.GetLdsConfig(), xds.ListenerType, s.onLDS, ldsScope)
	if err := errs.Err(); err != nil {
		return nil, configerr.Collect(err, "", cfg.Index)
	}
	return d, nil
}

// dialCluster is the xDS client's envoy_grpc dialer: a connection to a
// host of the named cluster, picked by its load balancer, through the
// cluster's transport socket (TLS offers ALPN h2 when the cluster speaks
// HTTP/2, as an xDS cluster must).
func (s *Server) dialCluster(ctx context.Context, name string) (net.Conn, error) {
	c := s.clusters.Cluster(name)
	if c == nil {
		return nil, fmt.Errorf("envoy_grpc: unknown cluster %q", name)
	}
	h := c.Pick(nil)
	if h == nil {
		return nil, fmt.Errorf("envoy_grpc: cluster %q has no healthy host", name)
	}
	return c.Dial(ctx, h)
}

// onCDS is the CDS subscription's callback.
func (s *Server) onCDS(u xds.Update) error { return s.xdsUpdate(xds.ClusterType, u.Resources) }

// onLDS is the LDS subscription's callback.
func (s *Server) onLDS(u xds.Update) error { return s.xdsUpdate(xds.ListenerType, u.Resources) }

// xdsUpdate validates the new set of one type together with the other
// type's accepted set and the static resources; the error is the NACK's
// error_detail, naming each bad resource and field
// (`listener "a".filter_chains[0]...: msg`). An accepted set is handed to
// the applier.
func (s *Server) xdsUpdate(typeURL string, rs []*xds.Resource) error {
	d := s.dyn
	d.updateMu.Lock()
	defer d.updateMu.Unlock()
	sets := d.accepted()
	if typeURL == xds.ListenerType {
		sets.listeners = rs
	} else {
		sets.clusters = rs
	}
	m := mergeResources(staticResources(s.cfg.Load()), sets)
	for _, n := range m.skipped {
		// Envoy: a resource not added via the API blocks updates
		// (ClusterData::blockUpdate, ListenerImpl::blockUpdate): "Any
		// clusters that are statically defined within the Envoy
		// configuration cannot be modified or removed via the CDS API".
		s.log.Warn("xds: a static resource has this name; the dynamic one is ignored", "resource", n)
	}
	if err := s.validate(s.ctx, m.res); err != nil {
		return err
	}
	d.mu.Lock()
	d.listeners, d.clusters = sets.listeners, sets.clusters
	d.gen++
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
	return nil
}

// validate builds r against the running configuration as Apply would and
// drops the result: no socket is bound, nothing starts.
func (s *Server) validate(ctx context.Context, r Resources) error {
	p, err := s.prepare(ctx, r)
	if err != nil {
		return err
	}
	p.discard()
	return nil
}

// runApplier applies the accepted xDS sets, the latest first (updates that
// arrive while one warms are coalesced), until ctx ends.
func (s *Server) runApplier(ctx context.Context) {
	d := s.dyn
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
		}
		d.mu.Lock()
		gen := d.gen
		d.mu.Unlock()
		// Listener warming: routes of new listeners arrive first (every
		// RDS subscription the update created is started by validation).
		s.rds.waitReady(ctx)
		s.waitSecrets(ctx)
		s.applyMu.Lock()
		m := mergeResources(staticResources(s.cfg.Load()), d.accepted())
		changes, err := s.applyLocked(ctx, m.res, xdsWarmTimeout)
		if err == nil {
			d.setApplied(m)
		}
		s.applyMu.Unlock()
		switch {
		case errors.Is(err, errShuttingDown) || ctx.Err() != nil:
		case err != nil:
			// Validation passed, so this is a bind failure or a race with
			// a static reload; the previous configuration keeps serving.
			s.log.Error("xds: applying the accepted update failed; the previous configuration keeps serving", "error", errorText(err))
		case !changes.Empty():
			s.log.Info("xds: configuration updated",
				"listeners_added", changes.ListenersAdded, "listeners_modified", changes.ListenersModified,
				"listeners_removed", changes.ListenersRemoved, "clusters_added", changes.ClustersAdded,
				"clusters_modified", changes.ClustersModified, "clusters_removed", changes.ClustersRemoved)
		}
		d.mu.Lock()
		d.applied = gen
		close(d.appliedCh)
		d.appliedCh = make(chan struct{})
		d.mu.Unlock()
	}
}

// waitApplied waits until the applier has applied every update accepted so
// far, or ctx ends.
func (d *dynamic) waitApplied(ctx context.Context) {
	d.mu.Lock()
	want := d.gen
	d.mu.Unlock()
	for {
		d.mu.Lock()
		done, ch := d.applied >= want, d.appliedCh
		d.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// startDynamic starts the xDS client and the applier, then initializes as
// Envoy's init manager does: CDS first (its first update accepted or
// rejected, or initial_fetch_timeout, and the clusters it brought warmed),
// then LDS the same way; then the server is LIVE
// (https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/operations/init#initialization).
// Static listeners already accept connections while it waits (Envoy starts
// them after initialization too; herald reports INITIALIZING meanwhile, so
// /ready answers 503). It returns when initialization is over or ctx ends.
func (s *Server) startDynamic(ctx context.Context) {
	d := s.dyn
	go s.runApplier(ctx)
	for _, sub := range []xds.Subscription{d.cds, d.lds} {
		if sub == nil {
			continue
		}
		sub.Start(ctx)
		select {
		case <-sub.Ready():
		case <-ctx.Done():
			return
		}
		d.waitApplied(ctx)
	}
	// Listeners the first updates brought may wait for their routes and
	// secrets.
	s.rds.waitReady(ctx)
	s.waitSecrets(ctx)
}

// stopDynamic stops the subscriptions and the client.
func (d *dynamic) stop() {
	if d == nil {
		return
	}
	for _, sub := range []xds.Subscription{d.lds, d.cds} {
		if sub != nil {
			sub.Stop()
		}
	}
	d.client.Close()
}

// merged is a static set with the dynamic resources added.
type merged struct {
	res Resources
	// listeners and clusters are the dynamic resources res holds.
	listeners, clusters []*xds.Resource
	// skipped names the dynamic resources a static one of the same name
	// hides ("listener a", "cluster b").
	skipped []string
}

// mergeResources appends the dynamic listeners and clusters to static,
// leaving out those whose name a static resource has (Envoy keeps the
// static one). Dynamic resources are named in error paths by kind and name,
// `listener "a"` and `cluster "b"`, as the NACK must name them.
func mergeResources(static Resources, sets xdsSets) merged {
	m := merged{res: static}
	staticL := make(map[string]bool, len(static.Listeners))
	for _, l := range static.Listeners {
		staticL[l.GetName()] = true
	}
	staticC := make(map[string]bool, len(static.Clusters))
	for _, c := range static.Clusters {
		staticC[c.GetName()] = true
	}
	ls := append([]*listenerv3.Listener(nil), static.Listeners...)
	for _, r := range sets.listeners {
		if staticL[r.Name] {
			m.skipped = append(m.skipped, "listener "+r.Name)
			continue
		}
		ls = append(ls, r.Message.(*listenerv3.Listener))
		m.listeners = append(m.listeners, r)
	}
	cs := append([]*clusterv3.Cluster(nil), static.Clusters...)
	for _, r := range sets.clusters {
		if staticC[r.Name] {
			m.skipped = append(m.skipped, "cluster "+r.Name)
			continue
		}
		cs = append(cs, r.Message.(*clusterv3.Cluster))
		m.clusters = append(m.clusters, r)
	}
	nl, nc := len(static.Listeners), len(static.Clusters)
	m.res.Listeners, m.res.Clusters = ls, cs
	m.res.ListenerPath = func(i int) string {
		if i < nl {
			return static.listenerPath(i)
		}
		return fmt.Sprintf("listener %q", ls[i].GetName())
	}
	m.res.ClusterPath = func(i int) string {
		if i < nc {
			return static.clusterPath(i)
		}
		return fmt.Sprintf("cluster %q", cs[i].GetName())
	}
	if static.Locator != nil {
		m.res.Locator = staticLocator{static.Locator}
	}
	return m
}

// staticLocator positions only static_resources paths: a dynamic
// resource's error carries no file position.
type staticLocator struct{ configerr.Locator }

// Locate implements configerr.Locator.
func (l staticLocator) Locate(path string) (configerr.Pos, bool) {
	if !strings.HasPrefix(path, "static_resources") {
		return configerr.Pos{}, false
	}
	return l.Locator.Locate(path)
}
