package server

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"
	"weak"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/herald-proxy/herald/internal/http/connmgr"
	"github.com/herald-proxy/herald/internal/xds"
)

// rdsProviders shares RDS subscriptions: one per config source and
// route_config_name, however many connection managers (and rebuilds of
// them) name it — Envoy's RouteConfigProviderManager. A listener rebuilt by
// LDS finds its routes at once instead of waiting for a new fetch.
type rdsProviders struct {
	mu    sync.Mutex
	byKey map[string]*rdsProvider
}

// rdsProvider is one shared RDS subscription.
type rdsProvider struct {
	// Immutable after creation:
	name string
	sub  xds.Subscription

	mu      sync.Mutex
	current *xds.Resource // last accepted; nil before the first
	// routes are the connection managers' tables, held weakly: a table
	// whose listener is gone is collected and dropped here.
	routes []weak.Pointer[connmgr.DynamicRoutes]
}

// WatchRouteConfig is how http_connection_manager's rds reaches the xDS
// client (its BuildContext.Server is the Server). The route configuration's
// current version is installed in routes at once; later accepted versions
// are installed in every table that shares it, or in none when one of them
// does not build (the update is NACKed with the error).
func (s *Server) WatchRouteConfig(src *corev3.ConfigSource, name, statPrefix string, routes *connmgr.DynamicRoutes) error {
	if s.dyn == nil {
		return errors.New("rds needs the server's xDS client (internal error)")
	}
	p, err := s.rds.provider(s, src, name, statPrefix)
	if err != nil {
		return err
	}
	return p.add(routes)
}

func (r *rdsProviders) provider(s *Server, src *corev3.ConfigSource, name, statPrefix string) (*rdsProvider, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(src)
	if err != nil {
		return nil, err
	}
	key := string(b) + "\x00" + name
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.byKey[key]; p != nil {
		return p, nil
	}
	p := &rdsProvider{name: name}
	// Envoy: RDS stats are rooted at http.<stat_prefix>.rds.<route_config_name>.
	// (https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/rds#statistics).
	sub, err := s.dyn.client.Subscribe(src, xds.RouteType, []string{name}, xds.Callbacks{Apply: p.apply},
		s.store.Scope("http."+statPrefix+".rds."+name+"."))
	if err != nil {
		return nil, errors.New(strings.TrimPrefix(err.Error(), "xds: "))
	}
	p.sub = sub
	if r.byKey == nil {
		r.byKey = map[string]*rdsProvider{}
	}
	r.byKey[key] = p
	sub.Start(s.ctx)
	return p, nil
}

// add installs the current version in routes and keeps routes for later
// versions.
func (p *rdsProvider) add(routes *connmgr.DynamicRoutes) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.current != nil {
		commit, err := routes.Prepare(p.current.Message)
		if err != nil {
			return err
		}
		commit()
	}
	live := p.routes[:0]
	for _, w := range p.routes {
		if w.Value() != nil {
			live = append(live, w)
		}
	}
	p.routes = append(live, weak.Make(routes))
	return nil
}

// apply is the subscription's callback: every live table builds the new
// version first; only when all built are they swapped. An update without
// the route configuration keeps the current one.
func (p *rdsProvider) apply(u xds.Update) error {
	var res *xds.Resource
	for _, r := range u.Resources {
		if r.Name == p.name {
			res = r
		}
	}
	if res == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if res == p.current {
		// The same version again (a response for another name): the
		// tables already hold it.
		return nil
	}
	var commits []func()
	live := p.routes[:0]
	for _, w := range p.routes {
		routes := w.Value()
		if routes == nil {
			continue
		}
		live = append(live, w)
		commit, err := routes.Prepare(res.Message)
		if err != nil {
			p.routes = live
			return err
		}
		commits = append(commits, commit)
	}
	p.routes = live
	for _, c := range commits {
		c()
	}
	p.current = res
	return nil
}

// all returns the providers sorted by route name.
func (r *rdsProviders) all() []*rdsProvider {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*rdsProvider, 0, len(r.byKey))
	for _, p := range r.byKey {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// waitReady waits until every RDS subscription had its first update (or
// its initial_fetch_timeout), or ctx ends: Envoy's listener warming waits
// for the listener's routes before the listener takes traffic
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/lds).
func (r *rdsProviders) waitReady(ctx context.Context) {
	for _, p := range r.all() {
		select {
		case <-p.sub.Ready():
		case <-ctx.Done():
			return
		}
	}
}

// stop ends every RDS subscription.
func (r *rdsProviders) stop() {
	for _, p := range r.all() {
		p.sub.Stop()
	}
}

// routesDump is admin /config_dump's RoutesConfigDump dynamic part: each
// route configuration RDS delivered, with its version and when it was
// accepted.
func (r *rdsProviders) routesDump() ([]*adminv3.RoutesConfigDump_DynamicRouteConfig, error) {
	var out []*adminv3.RoutesConfigDump_DynamicRouteConfig
	for _, p := range r.all() {
		p.mu.Lock()
		cur := p.current
		p.mu.Unlock()
		if cur == nil {
			continue
		}
		if cur.Any == nil {
			return nil, errors.New("rds: route configuration without its packed form")
		}
		out = append(out, &adminv3.RoutesConfigDump_DynamicRouteConfig{
			VersionInfo: cur.Version,
			RouteConfig: cur.Any,
			LastUpdated: timestamppb.New(cur.LastUpdated),
		})
	}
	return out, nil
}
