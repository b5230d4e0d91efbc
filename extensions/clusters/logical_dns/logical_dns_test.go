package logicaldns

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

type resolver struct {
	mu    sync.Mutex
	addrs []netip.Addr
}

func (r *resolver) set(a ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.addrs = nil
	for _, s := range a {
		r.addrs = append(r.addrs, netip.MustParseAddr(s))
	}
}

func (r *resolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.addrs, nil
}

type recorder struct {
	mu    sync.Mutex
	last  []clustertype.HostSpec
	ready bool
}

func (r *recorder) Attempt()      {}
func (r *recorder) Failure(error) {}
func (r *recorder) Ready()        { r.mu.Lock(); r.ready = true; r.mu.Unlock() }
func (r *recorder) Success(h []clustertype.HostSpec) {
	r.mu.Lock()
	r.last = h
	r.mu.Unlock()
}

const oneName = `{"name":"a","type":"LOGICAL_DNS","dns_lookup_family":"V4_ONLY","load_assignment":{"endpoints":[{"lb_endpoints":[
	{"endpoint":{"address":{"socket_address":{"address":"svc.test","port_value":443}}}}]}]}}`

func TestFirstAddressAndKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &clusterv3.Cluster{}
		if err := protojson.Unmarshal([]byte(oneName), c); err != nil {
			t.Fatal(err)
		}
		r := &resolver{}
		r.set("10.0.0.1", "10.0.0.2")
		d, err := Build(c, nil, clustertype.BuildContext{Path: "c", Resolver: r})
		if err != nil {
			t.Fatal(err)
		}
		var rec recorder
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		d.Start(ctx, &rec)
		synctest.Wait()

		for _, want := range []string{"10.0.0.1:443", "10.0.0.9:443"} {
			rec.mu.Lock()
			got := rec.last
			ready := rec.ready
			rec.mu.Unlock()
			if !ready || len(got) != 1 || got[0].Addr.String() != want || got[0].Key != "svc.test:443" || got[0].Hostname != "svc.test" {
				t.Fatalf("hosts = %+v (ready %v), want one host at %s keyed svc.test:443", got, ready, want)
			}
			r.set("10.0.0.9", "10.0.0.1")
			time.Sleep(5 * time.Second) // fake time: default refresh rate
			synctest.Wait()
		}
	})
}

func TestSingleEndpoint(t *testing.T) {
	c := &clusterv3.Cluster{}
	if err := protojson.Unmarshal([]byte(`{"name":"a","type":"LOGICAL_DNS","load_assignment":{"endpoints":[{"lb_endpoints":[
		{"endpoint":{"address":{"socket_address":{"address":"a.test","port_value":1}}}},
		{"endpoint":{"address":{"socket_address":{"address":"b.test","port_value":1}}}}]}]}}`), c); err != nil {
		t.Fatal(err)
	}
	_, err := Build(c, nil, clustertype.BuildContext{Path: "c"})
	if err == nil || !strings.Contains(err.Error(), "c.load_assignment: LOGICAL_DNS clusters must have a single") {
		t.Fatalf("Build error = %v", err)
	}
}
