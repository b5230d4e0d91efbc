package strictdns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/herald-proxy/herald/internal/upstream/clustertype"
)

// resolver answers from a table the test changes.
type resolver struct {
	mu    sync.Mutex
	addrs map[string][]netip.Addr // missing name: lookup fails
}

func (r *resolver) set(name string, addrs ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if addrs == nil {
		delete(r.addrs, name)
		return
	}
	var out []netip.Addr
	for _, a := range addrs {
		out = append(out, netip.MustParseAddr(a))
	}
	r.addrs[name] = out
}

func (r *resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if a, ok := r.addrs[host]; ok {
		return a, nil
	}
	return nil, errors.New("no such host")
}

type recorder struct {
	mu       sync.Mutex
	attempts int
	failures int
	ready    bool
	last     []string
	updates  int
}

func (r *recorder) Attempt() { r.mu.Lock(); r.attempts++; r.mu.Unlock() }
func (r *recorder) Failure(error) {
	r.mu.Lock()
	r.failures++
	r.mu.Unlock()
}
func (r *recorder) Ready() { r.mu.Lock(); r.ready = true; r.mu.Unlock() }
func (r *recorder) Success(h []clustertype.HostSpec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates++
	r.last = nil
	for _, s := range h {
		r.last = append(r.last, s.Addr.String()+"/"+s.Hostname)
	}
}

func (r *recorder) snapshot() (hosts []string, attempts, failures int, ready bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.last...), r.attempts, r.failures, r.ready
}

func build(t *testing.T, js string, r clustertype.Resolver) clustertype.Discovery {
	t.Helper()
	c := &clusterv3.Cluster{}
	if err := protojson.Unmarshal([]byte(js), c); err != nil {
		t.Fatal(err)
	}
	d, err := Build(c, nil, clustertype.BuildContext{Path: "c", Resolver: r})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const twoNames = `{"name":"a","type":"STRICT_DNS","dns_refresh_rate":"5s","dns_lookup_family":"V4_ONLY","load_assignment":{"endpoints":[{"lb_endpoints":[
	{"endpoint":{"address":{"socket_address":{"address":"a.test","port_value":80}}}},
	{"endpoint":{"address":{"socket_address":{"address":"b.test","port_value":81}}}}]}]}}`

func TestReResolve(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &resolver{addrs: map[string][]netip.Addr{}}
		r.set("a.test", "10.0.0.1", "10.0.0.2")
		r.set("b.test", "10.0.1.1")
		var rec recorder
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		build(t, twoNames, r).Start(ctx, &rec)
		synctest.Wait()

		steps := []struct {
			name         string
			change       func()
			wantHosts    []string
			wantFailures int
		}{
			{name: "initial: every resolved ip is a host", change: func() {},
				wantHosts: []string{"10.0.0.1:80/a.test", "10.0.0.2:80/a.test", "10.0.1.1:81/b.test"}},
			{name: "re-resolve changes membership", change: func() { r.set("a.test", "10.0.0.3") },
				wantHosts: []string{"10.0.0.3:80/a.test", "10.0.1.1:81/b.test"}},
			{name: "failure keeps previous hosts", change: func() { r.set("b.test") },
				wantHosts: []string{"10.0.0.3:80/a.test", "10.0.1.1:81/b.test"}, wantFailures: 1},
		}
		for i, st := range steps {
			st.change()
			if i > 0 {
				time.Sleep(5 * time.Second) // fake time: one refresh period
				synctest.Wait()
			}
			hosts, _, failures, ready := rec.snapshot()
			if !ready {
				t.Fatalf("%s: not ready", st.name)
			}
			if diff := cmp.Diff(st.wantHosts, hosts); diff != "" {
				t.Errorf("%s: hosts (-want +got):\n%s", st.name, diff)
			}
			if failures != st.wantFailures {
				t.Errorf("%s: failures = %d, want %d", st.name, failures, st.wantFailures)
			}
		}
		cancel()
		synctest.Wait() // the workers exit with ctx
	})
}

func TestReadyAfterFailedFirstAttempt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &resolver{addrs: map[string][]netip.Addr{}}
		r.set("a.test", "10.0.0.1")
		var rec recorder
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		build(t, twoNames, r).Start(ctx, &rec)
		synctest.Wait()
		hosts, attempts, failures, ready := rec.snapshot()
		if !ready || attempts != 2 || failures != 1 {
			t.Fatalf("ready=%v attempts=%d failures=%d, want ready after 2 attempts, 1 failure", ready, attempts, failures)
		}
		if diff := cmp.Diff([]string{"10.0.0.1:80/a.test"}, hosts); diff != "" {
			t.Errorf("hosts (-want +got):\n%s", diff)
		}
	})
}

func TestLocalhost(t *testing.T) {
	d := build(t, `{"name":"a","type":"STRICT_DNS","dns_lookup_family":"V4_ONLY","load_assignment":{"endpoints":[{"lb_endpoints":[
		{"endpoint":{"address":{"socket_address":{"address":"localhost","port_value":80}}}}]}]}}`, net.DefaultResolver)
	var rec recorder
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.Start(ctx, &rec)
	deadline := time.Now().Add(5 * time.Second)
	for {
		hosts, _, failures, ready := rec.snapshot()
		if ready {
			if failures != 0 || len(hosts) == 0 || hosts[0] != "127.0.0.1:80/localhost" {
				t.Fatalf("localhost resolved to %v (failures %d), want 127.0.0.1:80", hosts, failures)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("localhost did not resolve in 5s")
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}
