package xds

import (
	"context"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/herald-proxy/herald/internal/stats"
)

// TestLateWatchGetsCachedResources: a second EDS watch for a name the ADS
// stream already has (a rebuilt cluster with the same service name) gets
// the cached assignment at once: the server will not resend it, since the
// request's names do not change. A watch for a new name waits for the
// server's response.
func TestLateWatchGetsCachedResources(t *testing.T) {
	for _, tc := range []struct {
		name    string
		apiType corev3.ApiConfigSource_ApiType
	}{
		{name: "sotw", apiType: corev3.ApiConfigSource_GRPC},
		{name: "delta", apiType: corev3.ApiConfigSource_DELTA_GRPC},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Not the cache's ADS mode: it would hold back a response
			// until a request names every resource of the snapshot.
			cp := newControlPlane(t, false)
			cp.set("v1", map[string][]types.Resource{resource.EndpointType: {endpoints("a", 8001), endpoints("b", 8002)}})
			st := stats.NewStore()
			c := newTestClient(t, cp, envoyGrpc(tc.apiType), st)
			first := &recorder{}
			s1 := subscribe(t, c, adsSource(), EndpointType, []string{"a"}, first, st.Scope("cluster.a."))
			c.Start(context.Background())
			first.waitVersion(t, "v1")
			waitReady(t, s1)

			late := &recorder{}
			s2 := subscribe(t, c, adsSource(), EndpointType, []string{"a"}, late, st.Scope("cluster.a2."))
			waitReady(t, s2)
			u, ok := late.lastUpdate()
			if !ok || len(u.Resources) != 1 || u.Resources[0].Name != "a" {
				t.Fatalf("late watch got %+v, want the cached assignment a", u)
			}

			fresh := &recorder{}
			s3 := subscribe(t, c, adsSource(), EndpointType, []string{"b"}, fresh, st.Scope("cluster.b."))
			waitReady(t, s3)
			u, ok = fresh.lastUpdate()
			if !ok || len(u.Resources) != 1 || u.Resources[0].Name != "b" {
				t.Fatalf("watch for a new name got %+v, want assignment b from the server", u)
			}
		})
	}
}
