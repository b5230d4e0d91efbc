// Package grpcservice turns an envoy.config.core.v3.GrpcService (the
// grpc_service of ext_authz, ratelimit, access log services...) into a
// gRPC client connection: envoy_grpc dials a host its cluster's load
// balancer picks, through the cluster's transport socket (TLS included),
// so the cluster's connect timeout and circuit of hosts apply; google_grpc
// dials target_uri directly.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/grpc_service.proto
//
// Connections are shared process-wide by target: every snapshot that names
// the same cluster (or target_uri) with the same channel settings reuses one
// *grpc.ClientConn, so a config reload does not leak connections; grpc-go
// connects lazily and drops idle transports by itself. A connection holds
// one host at a time; when it breaks, the next dial picks a host again.
//
// It must not import extensions/ nor net/http.
package grpcservice

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/herald-proxy/herald/internal/upstream"
)

// Service is a built GrpcService: a connection and the per-call settings.
type Service struct {
	// Conn is the shared client connection.
	Conn *grpc.ClientConn
	// Timeout is GrpcService.timeout (0: none); Envoy's filters default it
	// themselves (ext_authz and ratelimit: 200 ms / 20 ms).
	Timeout time.Duration
	// Metadata is initial_metadata, sent with every call.
	Metadata metadata.MD
	// Target names the destination for logs and errors ("cluster ext-authz").
	Target string
}

// CallContext derives the context of one call: the service's timeout (or
// def when the service sets none) and its initial metadata.
func (s *Service) CallContext(parent context.Context, def time.Duration) (context.Context, context.CancelFunc) {
	ctx := parent
	if len(s.Metadata) > 0 {
		ctx = metadata.NewOutgoingContext(ctx, s.Metadata)
	}
	d := s.Timeout
	if d == 0 {
		d = def
	}
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return context.WithCancel(ctx)
}

type connKey struct {
	mgr       *upstream.Manager
	cluster   string
	target    string
	authority string
	maxRecv   uint32
}

var (
	connsMu sync.Mutex
	conns   = map[connKey]*grpc.ClientConn{}
)

// New builds gs. clusters resolves envoy_grpc.cluster_name at dial time (a
// cluster added later, or updated, is found then). Errors name the field
// below gs ("envoy_grpc.retry_policy: ..."); the caller prefixes its path.
func New(gs *corev3.GrpcService, clusters *upstream.Manager) (*Service, error) {
	if gs == nil {
		return nil, errors.New("grpc_service: required")
	}
	if gs.GetRetryPolicy() != nil {
		return nil, errors.New("retry_policy: not supported by herald yet")
	}
	s := &Service{Timeout: gs.GetTimeout().AsDuration()}
	for _, h := range gs.GetInitialMetadata() {
		if s.Metadata == nil {
			s.Metadata = metadata.MD{}
		}
		s.Metadata.Append(h.GetKey(), h.GetValue())
	}
	var key connKey
	switch t := gs.GetTargetSpecifier().(type) {
	case *corev3.GrpcService_EnvoyGrpc_:
		eg := t.EnvoyGrpc
		if eg.GetRetryPolicy() != nil {
			return nil, errors.New("envoy_grpc.retry_policy: not supported by herald yet")
		}
		if clusters == nil {
			return nil, errors.New("envoy_grpc: no cluster manager (internal error)")
		}
		// Envoy: authority defaults to the cluster name.
		key = connKey{mgr: clusters, cluster: eg.GetClusterName(), authority: eg.GetClusterName()}
		if a := eg.GetAuthority(); a != "" {
			key.authority = a
		}
		key.maxRecv = eg.GetMaxReceiveMessageLength().GetValue()
		s.Target = "cluster " + key.cluster
	case *corev3.GrpcService_GoogleGrpc_:
		gg := t.GoogleGrpc
		switch {
		case gg.GetChannelCredentials() != nil:
			return nil, errors.New("google_grpc.channel_credentials: not supported by herald yet (use envoy_grpc with a TLS cluster)")
		case len(gg.GetCallCredentials()) > 0:
			return nil, errors.New("google_grpc.call_credentials: not supported by herald yet")
		case gg.GetCredentialsFactoryName() != "":
			return nil, errors.New("google_grpc.credentials_factory_name: not supported by herald yet")
		case gg.GetChannelArgs() != nil:
			return nil, errors.New("google_grpc.channel_args: not supported by herald yet")
		}
		key = connKey{target: gg.GetTargetUri()}
		if n := gg.GetPerStreamBufferLimitBytes(); n != nil && n.GetValue() > 0 {
			key.maxRecv = n.GetValue()
		}
		s.Target = gg.GetTargetUri()
	default:
		return nil, errors.New("target_specifier: one of envoy_grpc or google_grpc is required")
	}
	conn, err := sharedConn(key)
	if err != nil {
		return nil, err
	}
	s.Conn = conn
	return s, nil
}

func sharedConn(k connKey) (*grpc.ClientConn, error) {
	connsMu.Lock()
	defer connsMu.Unlock()
	if c := conns[k]; c != nil {
		return c, nil
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if k.maxRecv > 0 {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(int(k.maxRecv))))
	}
	target := k.target
	if k.cluster != "" {
		mgr, name := k.mgr, k.cluster
		target = "passthrough:///" + name
		opts = append(opts, grpc.WithAuthority(k.authority),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
				return DialCluster(ctx, mgr, name)
			}))
	}
	c, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("google_grpc.target_uri: %v", err)
	}
	conns[k] = c
	return c, nil
}

// DialCluster connects to a host of the named cluster that its load
// balancer picks, through the cluster's transport socket.
func DialCluster(ctx context.Context, mgr *upstream.Manager, name string) (net.Conn, error) {
	c := mgr.Cluster(name)
	if c == nil {
		return nil, fmt.Errorf("envoy_grpc: unknown cluster %q", name)
	}
	h := c.Pick(nil)
	if h == nil {
		return nil, fmt.Errorf("envoy_grpc: cluster %q has no healthy host", name)
	}
	return c.Dial(ctx, h)
}
