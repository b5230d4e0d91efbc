package server

import (
	"context"
	"io"
	"maps"
	"net"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/admin"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/xds"
)

var _ admin.Source = (*Server)(nil)

func stateOf(name string) adminv3.ServerInfo_State {
	return adminv3.ServerInfo_State(adminv3.ServerInfo_State_value[name])
}

// Stats implements admin.Source.
func (s *Server) Stats() *stats.Store { return s.store }

// ServerInfo implements admin.Source.
func (s *Server) ServerInfo() *adminv3.ServerInfo {
	up := durationpb.New(time.Since(s.start).Truncate(time.Second))
	return &adminv3.ServerInfo{
		Version:            s.opts.Version,
		State:              s.State(),
		HotRestartVersion:  "disabled",
		UptimeCurrentEpoch: up,
		UptimeAllEpochs:    up,
		CommandLineOptions: &adminv3.CommandLineOptions{
			ConfigPath:     s.opts.ConfigPath,
			ConfigYaml:     s.opts.ConfigYAML,
			LogLevel:       levelName(s.level.Level()),
			Concurrency:    uint32(s.opts.Concurrency),
			ServiceCluster: s.opts.ServiceCluster,
			ServiceNode:    s.opts.ServiceNode,
			ServiceZone:    s.opts.ServiceZone,
			DrainTime:      durationpb.New(s.opts.DrainTime),
			Mode:           adminv3.CommandLineOptions_Serve,
		},
		Node: s.cfg.Load().Bootstrap.GetNode(),
	}
}

// State implements admin.Source.
func (s *Server) State() adminv3.ServerInfo_State {
	st := adminv3.ServerInfo_State(s.state.Load())
	if st == adminv3.ServerInfo_LIVE && s.hcFailed.Load() {
		return adminv3.ServerInfo_DRAINING
	}
	return st
}

// Listeners implements admin.Source.
func (s *Server) Listeners() []admin.ListenerStatus {
	ls := s.listeners()
	out := make([]admin.ListenerStatus, 0, len(ls))
	for _, l := range ls {
		// A QUIC listener's socket is UDP: Envoy's /listeners reports
		// socket_address.protocol UDP for it.
		out = append(out, admin.ListenerStatus{
			Name:  l.Name(),
			Addrs: []net.Addr{l.LocalAddr()},
		})
	}
	return out
}

// WriteClusters implements admin.Source.
func (s *Server) WriteClusters(w io.Writer, json bool) error {
	if json {
		return s.clusters.WriteClustersJSON(w)
	}
	return s.clusters.WriteClusters(w)
}

// ConfigDump implements admin.Source. last_updated is when each static
// listener and cluster was last added or changed (start-up or a reload),
// and when the bootstrap was last applied; dynamic listeners, clusters and
// route configurations carry the version_info and acceptance time of the
// xDS update that last changed them.
func (s *Server) ConfigDump(includeEDS bool) (*adminv3.ConfigDump, error) {
	b := cloneBootstrap(s.cfg.Load().Bootstrap)
	s.mu.Lock()
	applied := s.applied
	listenerUpdated := make(map[string]time.Time, len(s.running))
	for _, rl := range s.running {
		listenerUpdated[rl.proto.GetName()] = rl.updated
	}
	clusterUpdated := maps.Clone(s.clusterUpdated)
	s.mu.Unlock()
	stamp := func(t time.Time) *timestamppb.Timestamp {
		if t.IsZero() {
			t = applied
		}
		return timestamppb.New(t)
	}
	dumps := []*anypb.Any{}
	add := func(m proto.Message) error {
		a, err := anypb.New(m)
		if err != nil {
			return err
		}
		dumps = append(dumps, a)
		return nil
	}
	if err := add(&adminv3.BootstrapConfigDump{Bootstrap: b, LastUpdated: stamp(applied)}); err != nil {
		return nil, err
	}
	cd := &adminv3.ClustersConfigDump{}
	for _, c := range b.GetStaticResources().GetClusters() {
		a, err := anypb.New(c)
		if err != nil {
			return nil, err
		}
		cd.StaticClusters = append(cd.StaticClusters, &adminv3.ClustersConfigDump_StaticCluster{Cluster: a, LastUpdated: stamp(clusterUpdated[c.GetName()])})
	}
	var running merged
	var ldsStatus, cdsStatus xds.Status
	if d := s.dyn; d != nil {
		d.mu.Lock()
		running = d.running
		d.mu.Unlock()
		if d.lds != nil {
			ldsStatus = d.lds.Status()
		}
		if d.cds != nil {
			cdsStatus = d.cds.Status()
		}
	}
	// Envoy: version_info is the last CDS/LDS version, each dynamic
	// resource with the version that last changed it
	// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/admin/v3/config_dump_shared.proto).
	cd.VersionInfo = cdsStatus.VersionInfo
	for _, r := range running.clusters {
		cd.DynamicActiveClusters = append(cd.DynamicActiveClusters, &adminv3.ClustersConfigDump_DynamicCluster{
			VersionInfo: r.Version, Cluster: r.Any, LastUpdated: timestamppb.New(r.LastUpdated),
		})
	}
	if err := add(cd); err != nil {
		return nil, err
	}
	ld := &adminv3.ListenersConfigDump{}
	for _, l := range b.GetStaticResources().GetListeners() {
		a, err := anypb.New(l)
		if err != nil {
			return nil, err
		}
		ld.StaticListeners = append(ld.StaticListeners, &adminv3.ListenersConfigDump_StaticListener{Listener: a, LastUpdated: stamp(listenerUpdated[l.GetName()])})
	}
	ld.VersionInfo = ldsStatus.VersionInfo
	for _, r := range running.listeners {
		ld.DynamicListeners = append(ld.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name: r.Name,
			ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{
				VersionInfo: r.Version, Listener: r.Any, LastUpdated: timestamppb.New(r.LastUpdated),
			},
		})
	}
	if f := ldsStatus.Failure; f != nil {
		// A rejected LDS update names its resources in details; Envoy
		// dumps errors not tied to one listener this way.
		ld.DynamicListeners = append(ld.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			ErrorState: &adminv3.UpdateFailureState{Details: f.Details, VersionInfo: f.VersionInfo, LastUpdateAttempt: timestamppb.New(f.LastUpdateAttempt)},
		})
	}
	if err := add(ld); err != nil {
		return nil, err
	}
	routes, err := s.rds.routesDump()
	if err != nil {
		return nil, err
	}
	if err := add(&adminv3.RoutesConfigDump{DynamicRouteConfigs: routes}); err != nil {
		return nil, err
	}
	sd, err := s.secretsDump()
	if err != nil {
		return nil, err
	}
	if err := add(sd); err != nil {
		return nil, err
	}
	if includeEDS {
		ed, err := s.endpointsDump(func(name string) *timestamppb.Timestamp { return stamp(clusterUpdated[name]) })
		if err != nil {
			return nil, err
		}
		if err := add(ed); err != nil {
			return nil, err
		}
	}
	return &adminv3.ConfigDump{Configs: dumps}, nil
}

// Quit implements admin.Source.
func (s *Server) Quit() { s.quitOnce.Do(func() { close(s.quit) }) }

// DrainListeners implements admin.Source.
func (s *Server) DrainListeners(opts admin.DrainOptions) error {
	for _, l := range s.listeners() {
		if opts.InboundOnly && !l.Config().Inbound {
			continue
		}
		if opts.Graceful {
			l.Drain()
			if !opts.SkipExit {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), s.drainTime())
					defer cancel()
					<-ctx.Done()
					l.StopAccepting()
				}()
			}
			continue
		}
		if !opts.SkipExit {
			l.StopAccepting()
		}
		l.Drain()
	}
	return nil
}

func (s *Server) drainTime() time.Duration {
	if s.opts.DrainTime > 0 {
		return s.opts.DrainTime
	}
	return 600 * time.Second
}

// SetHealthcheckFailed implements admin.Source.
func (s *Server) SetHealthcheckFailed(failed bool) {
	s.hcFailed.Store(failed)
}

// HealthcheckFailed reports whether /healthcheck/fail is in effect (the
// health_check filter reads it).
func (s *Server) HealthcheckFailed() bool { return s.hcFailed.Load() }

// LogLevels implements admin.Source. herald has one logger, named after
// Envoy's catch-all "admin"-style loggers: "herald".
func (s *Server) LogLevels() map[string]string {
	return map[string]string{"herald": levelName(s.level.Level())}
}

// SetLogLevel implements admin.Source.
func (s *Server) SetLogLevel(_ string, level string) error {
	l, err := ParseLevel(level)
	if err != nil {
		return err
	}
	s.level.Set(l)
	return nil
}

// ReopenLogs implements admin.Source.
func (s *Server) ReopenLogs() {
	if err := s.files.Reopen(); err != nil {
		s.log.Error("reopen access logs", "error", err)
	}
}

// AccessLogFiles is the process's access-log file manager; access-log
// extensions reach it through their build context.
func (s *Server) AccessLogFiles() *accesslog.FileManager { return s.files }

var _ accesslog.FileSource = (*Server)(nil)

// edsStatus is what an EDS cluster's discovery offers the config dump.
type edsStatus interface{ Status() xds.Status }

// endpointsDump is /config_dump?include_eds: each EDS cluster's current
// ClusterLoadAssignment with the version and time it was accepted, and the
// load_assignment of every other cluster as a static endpoint config, as
// Envoy's cluster manager dumps them.
func (s *Server) endpointsDump(updated func(cluster string) *timestamppb.Timestamp) (*adminv3.EndpointsConfigDump, error) {
	ed := &adminv3.EndpointsConfigDump{}
	for _, c := range s.clusters.Clusters() {
		if es, ok := c.Discovery().(edsStatus); ok {
			for _, r := range es.Status().Resources {
				ed.DynamicEndpointConfigs = append(ed.DynamicEndpointConfigs, &adminv3.EndpointsConfigDump_DynamicEndpointConfig{
					VersionInfo: r.Version, EndpointConfig: r.Any, LastUpdated: timestamppb.New(r.LastUpdated),
				})
			}
			continue
		}
		la := c.Config().GetLoadAssignment()
		if la == nil {
			continue
		}
		a, err := anypb.New(la)
		if err != nil {
			return nil, err
		}
		ed.StaticEndpointConfigs = append(ed.StaticEndpointConfigs, &adminv3.EndpointsConfigDump_StaticEndpointConfig{
			EndpointConfig: a, LastUpdated: updated(c.Name()),
		})
	}
	return ed, nil
}
