package xds

import (
	"context"
	"sync"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

type (
	sotwStream  = grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	deltaStream = grpc.BidiStreamingClient[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]
)

// streamOpener opens the SotW and delta streams of one discovery service.
type streamOpener struct {
	sotw  func(ctx context.Context, cc grpc.ClientConnInterface) (sotwStream, error)
	delta func(ctx context.Context, cc grpc.ClientConnInterface) (deltaStream, error)
}

// adsOpener is envoy.service.discovery.v3.AggregatedDiscoveryService.
var adsOpener = &streamOpener{
	sotw: func(ctx context.Context, cc grpc.ClientConnInterface) (sotwStream, error) {
		return discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	},
	delta: func(ctx context.Context, cc grpc.ClientConnInterface) (deltaStream, error) {
		return discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	},
}

// streamOpeners are the per-type discovery services.
var streamOpeners = map[string]*streamOpener{
	ListenerType: {
		sotw: func(ctx context.Context, cc grpc.ClientConnInterface) (sotwStream, error) {
			return listenerservice.NewListenerDiscoveryServiceClient(cc).StreamListeners(ctx)
		},
		delta: func(ctx context.Context, cc grpc.ClientConnInterface) (deltaStream, error) {
			return listenerservice.NewListenerDiscoveryServiceClient(cc).DeltaListeners(ctx)
		},
	},
	ClusterType: {
		sotw: func(ctx context.Context, cc grpc.ClientConnInterface) (sotwStream, error) {
			return clusterservice.NewClusterDiscoveryServiceClient(cc).StreamClusters(ctx)
		},
		delta: func(ctx context.Context, cc grpc.ClientConnInterface) (deltaStream, error) {
			return clusterservice.NewClusterDiscoveryServiceClient(cc).DeltaClusters(ctx)
		},
	},
	RouteType: {
		sotw: func(ctx context.Context, cc grpc.ClientConnInterface) (sotwStream, error) {
			return routeservice.NewRouteDiscoveryServiceClient(cc).StreamRoutes(ctx)
		},
		delta: func(ctx context.Context, cc grpc.ClientConnInterface) (deltaStream, error) {
			return routeservice.NewRouteDiscoveryServiceClient(cc).DeltaRoutes(ctx)
		},
	},
	ScopedRouteType: {
		sotw: func(ctx context.Context, cc grpc.ClientConnInterface) (sotwStream, error) {
			return routeservice.NewScopedRoutesDiscoveryServiceClient(cc).StreamScopedRoutes(ctx)
		},
		delta: func(ctx context.Context, cc grpc.ClientConnInterface) (deltaStream, error) {
			return routeservice.NewScopedRoutesDiscoveryServiceClient(cc).DeltaScopedRoutes(ctx)
		},
	},
	EndpointType: {
		sotw: func(ctx context.Context, cc grpc.ClientConnInterface) (sotwStream, error) {
			return endpointservice.NewEndpointDiscoveryServiceClient(cc).StreamEndpoints(ctx)
		},
		delta: func(ctx context.Context, cc grpc.ClientConnInterface) (deltaStream, error) {
			return endpointservice.NewEndpointDiscoveryServiceClient(cc).DeltaEndpoints(ctx)
		},
	},
	SecretType: {
		sotw: func(ctx context.Context, cc grpc.ClientConnInterface) (sotwStream, error) {
			return secretservice.NewSecretDiscoveryServiceClient(cc).StreamSecrets(ctx)
		},
		delta: func(ctx context.Context, cc grpc.ClientConnInterface) (deltaStream, error) {
			return secretservice.NewSecretDiscoveryServiceClient(cc).DeltaSecrets(ctx)
		},
	},
}

func (m *Mux) opener() *streamOpener {
	if m.ads {
		return adsOpener
	}
	return streamOpeners[m.typeURL]
}

// streamContext is ctx with the grpc_service's initial_metadata.
func (m *Mux) streamContext(ctx context.Context) context.Context {
	if len(m.md) == 0 {
		return ctx
	}
	return metadata.NewOutgoingContext(ctx, m.md)
}

// sotwNames is a SotW request's resource_names: empty for a wildcard-only
// subscription (legacy wildcard), "*" plus the names when a wildcard and
// names are both wanted (xds_protocol#how-the-client-specifies-what-resources-to-return).
func sotwNames(names map[string]bool, wildcard bool) []string {
	out := sortedNames(names)
	if wildcard && len(out) > 0 {
		out = append([]string{"*"}, out...)
	}
	return out
}

// sotwSession runs one state-of-the-world stream until it fails or ctx ends.
func (m *Mux) sotwSession(ctx context.Context, conn *grpc.ClientConn, bo *jitteredBackoff) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	st, err := m.opener().sotw(m.streamContext(ctx), conn)
	if err != nil {
		return err
	}
	m.connected.Set(1)
	respc := make(chan *discoveryv3.DiscoveryResponse)
	errc := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		recvLoop(ctx, st.Recv, respc, errc)
	}()

	first := true
	send := func(req *discoveryv3.DiscoveryRequest) error {
		// Envoy sends the node on every request unless
		// set_node_on_first_message_only.
		if first || !m.nodeFirstOnly {
			req.Node = m.node
		}
		first = false
		return st.Send(req)
	}
	request := func(v tsView) error {
		names, wildcard := v.interest()
		return send(&discoveryv3.DiscoveryRequest{
			TypeUrl:       v.url,
			VersionInfo:   v.version,
			ResourceNames: sotwNames(names, wildcard),
			ResponseNonce: v.nonce,
		})
	}
	// A new stream: every type again with the last ACKed version and no
	// nonce (xds_protocol#resource-warming, #reconnect).
	m.dirtyTypes()
	for _, v := range m.snapshot() {
		v.nonce = ""
		if len(v.watches) == 0 {
			continue
		}
		if err := request(v); err != nil {
			return err
		}
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-errc:
			return err
		case <-m.kick:
			for _, v := range m.dirtyTypes() {
				if len(v.watches) == 0 {
					continue
				}
				m.dropUninterested(v)
				if err := request(v); err != nil {
					return err
				}
				primeNew(v)
			}
		case resp := <-respc:
			bo.reset()
			m.connected.Set(1)
			req := m.handleSotw(resp)
			if req == nil {
				continue
			}
			v, _ := m.lookup(resp.GetTypeUrl())
			names, wildcard := v.interest()
			req.ResourceNames = sotwNames(names, wildcard)
			if err := send(req); err != nil {
				return err
			}
		}
	}
}

// dropUninterested forgets cached resources nobody asks for any more.
func (m *Mux) dropUninterested(v tsView) {
	names, wildcard := v.interest()
	if wildcard {
		return
	}
	for n := range v.cache {
		if !names[n] {
			next := make(map[string]*Resource, len(v.cache))
			for k, r := range v.cache {
				if names[k] {
					next[k] = r
				}
			}
			v.cache = next
			return
		}
	}
}

// handleSotw validates and applies a response and returns the ACK or NACK
// to send (nil for a type nobody subscribes to).
func (m *Mux) handleSotw(resp *discoveryv3.DiscoveryResponse) *discoveryv3.DiscoveryRequest {
	url, version := resp.GetTypeUrl(), resp.GetVersionInfo()
	v, ok := m.lookup(url)
	if !ok || len(v.watches) == 0 {
		m.log.Debug("xds: ignoring response for a type without subscriptions", "type", url)
		return nil
	}
	v.nonce = resp.GetNonce()
	nack := func(err error) *discoveryv3.DiscoveryRequest {
		m.log.Warn("xds: NACK", "type", kindOf(url), "version", version, "error", err)
		return &discoveryv3.DiscoveryRequest{TypeUrl: url, VersionInfo: v.version, ResponseNonce: v.nonce, ErrorDetail: errorDetail(err)}
	}
	ds, err := decodeAll(url, resp.GetResources())
	if err != nil {
		for _, w := range v.watches {
			w.rejectUndelivered(version, err)
		}
		return nack(err)
	}
	next := map[string]*Resource{}
	if !fullStateType(url) {
		// RDS, EDS, SDS responses need only carry what changed
		// (xds_protocol#grouping-resources-into-responses).
		for k, r := range v.cache {
			next[k] = r
		}
	}
	next = mergeDecoded(next, v.cache, ds, version, time.Now())
	if err := deliverAll(v.watches, version, next); err != nil {
		return nack(err)
	}
	v.cache, v.version = next, version
	return &discoveryv3.DiscoveryRequest{TypeUrl: url, VersionInfo: version, ResponseNonce: v.nonce}
}
