package extauthz

import (
	"crypto/x509"
	"net/netip"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthznetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/grpcservice"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/stats"
	"github.com/herald-proxy/herald/internal/upstream"
)

func init() {
	netfilter.Register(netfilter.Extension[*extauthznetv3.ExtAuthz]{
		Name:   Name,
		Config: &extauthznetv3.ExtAuthz{},
		Build:  Build,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.network.ext_authz"

// defaultTimeout: "The default timeout is set to 200ms by this filter."
const defaultTimeout = 200 * time.Millisecond

// supported are the ExtAuthz fields herald interprets; any other set field
// is an error naming it.
var supported = []string{"stat_prefix", "grpc_service", "failure_mode_allow", "transport_api_version", "include_tls_session"}

var unsupportedIssues = map[string]string{
	"include_peer_certificate":          "#8",
	"filter_enabled_metadata":           "#8",
	"bootstrap_metadata_labels_key":     "#8",
	"send_tls_alert_on_denial":          "#8",
	"metadata_context_namespaces":       "#8",
	"typed_metadata_context_namespaces": "#8",
	"shadow_mode":                       "#8",
}

// Filter is a built network ext_authz. Immutable after Build.
type Filter struct {
	svc               *grpcservice.Service
	client            authv3.AuthorizationClient
	failureModeAllow  bool
	includeTLSSession bool
	// Envoy's ExtAuthzStats, rooted at ext_authz.<stat_prefix>.
	total, ok, denied, errorC, failureModeAllowed, cxClosed *stats.Counter
	active                                                  *stats.Gauge
}

var _ netfilter.ConnectionFilter = (*Filter)(nil)

// Build interprets a network ExtAuthz once per snapshot.
func Build(cfg *extauthznetv3.ExtAuthz, ctx netfilter.BuildContext) (netfilter.Filter, error) {
	errs := configerr.RejectUnlisted(cfg, ctx.Path, unsupportedIssues, supported...)
	if cfg.GetStatPrefix() == "" {
		errs = append(errs, configerr.At(ctx.Path+".stat_prefix", "stat_prefix is required"))
	}
	if cfg.GetTransportApiVersion() == corev3.ApiVersion_V2 {
		errs = append(errs, configerr.At(ctx.Path+".transport_api_version", "only V3 is supported (Envoy removed V2)"))
	}
	f := &Filter{failureModeAllow: cfg.GetFailureModeAllow(), includeTLSSession: cfg.GetIncludeTlsSession()}
	clusters, _ := ctx.Clusters.(*upstream.Manager)
	svc, err := grpcservice.New(cfg.GetGrpcService(), clusters)
	if err != nil {
		errs = append(errs, configerr.At(ctx.Path+".grpc_service", "%v", err))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	f.svc, f.client = svc, authv3.NewAuthorizationClient(svc.Conn)
	// Envoy (network/ext_authz/ext_authz.h generateStats): "ext_authz.<stat_prefix>.".
	sc := ctx.Stats.Scope("ext_authz." + cfg.GetStatPrefix() + ".")
	f.total = sc.Counter("total")
	f.ok = sc.Counter("ok")
	f.denied = sc.Counter("denied")
	f.errorC = sc.Counter("error")
	f.failureModeAllowed = sc.Counter("failure_mode_allowed")
	f.cxClosed = sc.Counter("cx_closed")
	f.active = ctx.Stats.Gauge("ext_authz." + cfg.GetStatPrefix() + ".active")
	return f, nil
}

// OnNewConnection implements netfilter.ConnectionFilter: Envoy's
// Filter::onData + onComplete (network/ext_authz/ext_authz.cc). Envoy checks
// when the first bytes arrive; herald checks once the connection is
// accepted and its TLS handshake (if any) done, before the filters after
// it read anything, so the service sees the same attributes and a denied
// client never reaches them. A denial, or an error without
// failure_mode_allow, closes the connection.
func (f *Filter) OnNewConnection(c *network.Conn) bool {
	f.total.Inc()
	f.active.Inc()
	ctx, cancel := f.svc.CallContext(c.Ctx, defaultTimeout)
	resp, err := f.client.Check(ctx, f.checkRequest(c))
	cancel()
	f.active.Dec()
	switch {
	case err != nil:
		f.errorC.Inc()
		if f.failureModeAllow {
			f.failureModeAllowed.Inc()
			return true
		}
	case codes.Code(resp.GetStatus().GetCode()) == codes.OK:
		f.ok.Inc()
		return true
	case resp.GetErrorResponse() != nil:
		f.errorC.Inc()
		if f.failureModeAllow {
			f.failureModeAllowed.Inc()
			return true
		}
	default:
		f.denied.Inc()
	}
	f.cxClosed.Inc()
	return false
}

// checkRequest is Envoy's CheckRequestUtils::createTcpCheck: the source
// peer (address; principal: the client certificate's first URI SAN, else
// its subject), the destination peer (address; service: the SNI), and the
// TLS session's SNI with include_tls_session.
func (f *Filter) checkRequest(c *network.Conn) *authv3.CheckRequest {
	src := &authv3.AttributeContext_Peer{Address: socketAddress(c.Remote)}
	if cert := c.PeerCertificate(); cert != nil {
		src.Principal = principal(cert)
	}
	attrs := &authv3.AttributeContext{
		Source:      src,
		Destination: &authv3.AttributeContext_Peer{Address: socketAddress(c.Local), Service: c.ServerName},
	}
	if f.includeTLSSession {
		attrs.TlsSession = &authv3.AttributeContext_TLSSession{Sni: c.ServerName}
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

func principal(cert *x509.Certificate) string {
	if len(cert.URIs) > 0 {
		return cert.URIs[0].String()
	}
	return cert.Subject.String()
}

func socketAddress(a netip.AddrPort) *corev3.Address {
	if !a.IsValid() {
		return nil
	}
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       a.Addr().Unmap().String(),
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(a.Port())},
	}}}
}
