package server

import (
	"errors"
	"runtime"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/connmgr"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/xds"
)

// nameRoute is a route that is the route configuration's name.
type nameRoute string

func (nameRoute) PerFilterConfig(string) any { return nil }

type nameResolver struct{ r nameRoute }

func (n nameResolver) Resolve(*hhttp.Headers, uint16) httpfilter.Route { return n.r }

// tableFor is a connection manager's table that builds a route
// configuration into "its name", or fails when reject says so.
func tableFor(reject func(*routev3.RouteConfiguration) bool) *connmgr.DynamicRoutes {
	return connmgr.NewDynamicRoutes(func(m any) (connmgr.RouteResolver, error) {
		rc := m.(*routev3.RouteConfiguration)
		if reject != nil && reject(rc) {
			return nil, errors.New("does not build here")
		}
		return nameResolver{r: nameRoute(rc.GetName() + "@" + rc.GetVirtualHosts()[0].GetName())}, nil
	})
}

func rdsUpdate(version string) xds.Update {
	rc := &routev3.RouteConfiguration{Name: "r", VirtualHosts: []*routev3.VirtualHost{{Name: version}}}
	return xds.Update{Resources: []*xds.Resource{{Name: "r", Version: version, Message: rc}}}
}

func current(d *connmgr.DynamicRoutes) httpfilter.Route { return d.Resolve(&hhttp.Headers{}, 80) }

// TestRDSProvider: a route configuration shared by two connection
// managers is installed in both or, when one cannot build it, in neither
// (the update is NACKed); a table added later starts with the current
// version.
func TestRDSProvider(t *testing.T) {
	p := &rdsProvider{name: "r"}
	rejectV2 := func(rc *routev3.RouteConfiguration) bool { return rc.GetVirtualHosts()[0].GetName() == "v2" }
	a, b := tableFor(nil), tableFor(rejectV2)
	for _, d := range []*connmgr.DynamicRoutes{a, b} {
		if err := p.add(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.apply(rdsUpdate("v1")); err != nil {
		t.Fatalf("v1: %v", err)
	}
	if current(a) != nameRoute("r@v1") || current(b) != nameRoute("r@v1") {
		t.Fatalf("after v1: a = %v, b = %v; want r@v1 in both", current(a), current(b))
	}
	if err := p.apply(rdsUpdate("v2")); err == nil {
		t.Fatal("v2 does not build for b but was accepted")
	}
	if current(a) != nameRoute("r@v1") {
		t.Errorf("after the rejected v2: a = %v, want r@v1 (all or nothing)", current(a))
	}
	c := tableFor(nil)
	if err := p.add(c); err != nil {
		t.Fatal(err)
	}
	if current(c) != nameRoute("r@v1") {
		t.Errorf("a table added later = %v, want the current r@v1", current(c))
	}
	// A table that does not build the current version is refused.
	if err := p.add(tableFor(func(*routev3.RouteConfiguration) bool { return true })); err == nil {
		t.Error("a table that cannot build the current version was added")
	}
	// An update without the route configuration keeps it.
	if err := p.apply(xds.Update{}); err != nil || current(a) != nameRoute("r@v1") {
		t.Errorf("empty update: err %v, a = %v; want nil and r@v1", err, current(a))
	}
	runtime.KeepAlive(b)
}

// TestRDSProviderDropsCollectedTables: the provider holds tables weakly; a
// table whose listener is gone is dropped on the next update.
func TestRDSProviderDropsCollectedTables(t *testing.T) {
	p := &rdsProvider{name: "r"}
	keep := tableFor(nil)
	if err := p.add(keep); err != nil {
		t.Fatal(err)
	}
	func() {
		if err := p.add(tableFor(nil)); err != nil {
			t.Fatal(err)
		}
	}()
	runtime.GC()
	runtime.GC()
	if err := p.apply(rdsUpdate("v1")); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	n := len(p.routes)
	p.mu.Unlock()
	if n != 1 {
		t.Errorf("provider holds %d tables after GC, want 1", n)
	}
	if current(keep) != nameRoute("r@v1") {
		t.Errorf("kept table = %v, want r@v1", current(keep))
	}
}
