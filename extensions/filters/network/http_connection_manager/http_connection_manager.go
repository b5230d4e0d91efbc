package httpconnectionmanager

import (
	"fmt"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/configerr"
	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/connmgr"
	"github.com/herald-proxy/herald/internal/http/httpfilter"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/router"
	"github.com/herald-proxy/herald/internal/upstream"
)

func init() {
	netfilter.Register(netfilter.Extension[*hcmv3.HttpConnectionManager]{
		Name:     "envoy.filters.network.http_connection_manager",
		Config:   &hcmv3.HttpConnectionManager{},
		Build:    Build,
		Terminal: true,
	})
}

// Envoy's defaults (http_connection_manager.proto).
const (
	defaultServerName        = "envoy"
	defaultMaxHeadersKB      = 60
	defaultMaxHeadersCount   = 100
	defaultStreamIdleTimeout = 5 * time.Minute
	defaultIdleTimeout       = time.Hour
	defaultDrainTimeout      = 5 * time.Second
)

// supported are the HttpConnectionManager fields herald interprets; any
// other field that is set is an error naming it (STYLE.md §5), with the
// issue that will add it from unsupportedIssues.
var supported = []string{
	"codec_type", "stat_prefix", "route_config", "rds", "http_filters", "access_log",
	"use_remote_address", "xff_num_trusted_hops", "skip_xff_append", "via",
	"generate_request_id", "preserve_external_request_id", "always_set_request_id_in_response",
	"server_name", "server_header_transformation", "max_request_headers_kb",
	"common_http_protocol_options", "http_protocol_options", "http2_protocol_options",
	"http3_protocol_options", // http3_options.go
	"stream_idle_timeout", "request_timeout", "drain_timeout",
	"strip_matching_host_port", "strip_any_host_port", "upgrade_configs",
	"forward_client_cert_details", "set_current_client_cert_details", // xfcc.go
	"normalize_path", // only false: checked in Build
}

// Sub-message fields herald interprets.
var (
	supportedCommon = commonFields // common_options.go
	supportedHTTP1  = []string{"accept_http_10", "default_host_for_http_10", "enable_trailers"}
	supportedHTTP2  = http2Fields // http2_options.go
)

var unsupportedIssues = map[string]string{
	"scoped_routes": "#7",
}

// Filter is the built connection manager: the terminal network filter.
type Filter struct {
	cfg *connmgr.Config
}

var _ netfilter.Terminal = (*Filter)(nil)

// ServeConn implements netfilter.Terminal.
func (f *Filter) ServeConn(c *network.Conn) { f.cfg.ServeConn(c) }

// Config returns the built connection manager config (for tests and admin).
func (f *Filter) Config() *connmgr.Config { return f.cfg }

// Build interprets an HttpConnectionManager once per snapshot.
func Build(p *hcmv3.HttpConnectionManager, ctx netfilter.BuildContext) (netfilter.Filter, error) {
	var errs configerr.List
	path := ctx.Path
	errs = append(errs, configerr.RejectUnlisted(p, path, unsupportedIssues, supported...)...)
	errs = append(errs, configerr.RejectUnlisted(p.GetCommonHttpProtocolOptions(), path+".common_http_protocol_options", unsupportedIssues, supportedCommon...)...)
	errs = append(errs, configerr.RejectUnlisted(p.GetHttpProtocolOptions(), path+".http_protocol_options", unsupportedIssues, supportedHTTP1...)...)
	errs = append(errs, configerr.RejectUnlisted(p.GetHttp2ProtocolOptions(), path+".http2_protocol_options", unsupportedIssues, supportedHTTP2...)...)
	if p.GetNormalizePath().GetValue() {
		errs = append(errs, configerr.At(path+".normalize_path", "normalize_path is %s (only false)", configerr.NotSupported))
	}

	cfg := &connmgr.Config{
		StatPrefix:                   p.GetStatPrefix(),
		ServerName:                   defaultServerName,
		GenerateRequestID:            true,
		MaxRequestHeadersBytes:       defaultMaxHeadersKB << 10,
		MaxRequestHeadersCount:       defaultMaxHeadersCount,
		StreamIdleTimeout:            defaultStreamIdleTimeout,
		IdleTimeout:                  defaultIdleTimeout,
		DrainTimeout:                 defaultDrainTimeout,
		BufferLimit:                  1 << 20,
		UseRemoteAddress:             p.GetUseRemoteAddress().GetValue(),
		XffNumTrustedHops:            int(p.GetXffNumTrustedHops()),
		SkipXffAppend:                p.GetSkipXffAppend(),
		PreserveExternalRequestID:    p.GetPreserveExternalRequestId(),
		AlwaysSetRequestIDInResponse: p.GetAlwaysSetRequestIdInResponse(),
		Via:                          p.GetVia(),
		AcceptHTTP10:                 p.GetHttpProtocolOptions().GetAcceptHttp_10(),
		EnableTrailers:               p.GetHttpProtocolOptions().GetEnableTrailers(),
		DefaultHostForHTTP10:         p.GetHttpProtocolOptions().GetDefaultHostForHttp_10(),
	}
	switch p.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO:
		cfg.Codec = connmgr.Auto
	case hcmv3.HttpConnectionManager_HTTP1:
		cfg.Codec = connmgr.HTTP1
	case hcmv3.HttpConnectionManager_HTTP2:
		cfg.Codec = connmgr.HTTP2
	case hcmv3.HttpConnectionManager_HTTP3:
		// Only valid on a QUIC listener; the snapshot checks the pairing.
		cfg.Codec = connmgr.HTTP3
	default:
		errs = append(errs, configerr.At(path+".codec_type", "codec_type %s is not supported by herald yet (#6)", p.GetCodecType()))
	}
	if p.GetServerName() != "" {
		cfg.ServerName = p.GetServerName()
	}
	switch p.GetServerHeaderTransformation() {
	case hcmv3.HttpConnectionManager_OVERWRITE:
		cfg.ServerHeaderTransformation = connmgr.Overwrite
	case hcmv3.HttpConnectionManager_APPEND_IF_ABSENT:
		cfg.ServerHeaderTransformation = connmgr.AppendIfAbsent
	case hcmv3.HttpConnectionManager_PASS_THROUGH:
		cfg.ServerHeaderTransformation = connmgr.PassThrough
	}
	if v := p.GetGenerateRequestId(); v != nil {
		cfg.GenerateRequestID = v.GetValue()
	}
	if v := p.GetMaxRequestHeadersKb(); v != nil {
		cfg.MaxRequestHeadersBytes = int(v.GetValue()) << 10
	}
	errs = append(errs, buildCommonOptions(p.GetCommonHttpProtocolOptions(), path+".common_http_protocol_options", cfg)...)
	durationOr(p.GetStreamIdleTimeout(), &cfg.StreamIdleTimeout)
	durationOr(p.GetRequestTimeout(), &cfg.RequestTimeout)
	durationOr(p.GetDrainTimeout(), &cfg.DrainTimeout)
	cfg.HTTP2 = http2Options(p.GetHttp2ProtocolOptions())
	h3, h3errs := buildHTTP3Options(p.GetHttp3ProtocolOptions(), path+".http3_protocol_options")
	cfg.HTTP3 = h3
	errs = append(errs, h3errs...)
	cfg.Stats = connmgr.NewStats(ctx.Stats, cfg.StatPrefix)
	cfg.Store = ctx.Stats
	errs = append(errs, buildXFCC(p, path, cfg)...)
	upgrades, uerrs := buildUpgrades(p.GetUpgradeConfigs(), path)
	cfg.Upgrades = upgrades
	errs = append(errs, uerrs...)

	mgr, _ := ctx.Clusters.(*upstream.Manager)
	fctx := httpfilter.BuildContext{
		StatPrefix:    "http." + cfg.StatPrefix + ".",
		Stats:         ctx.Stats,
		Clusters:      mgr,
		ServerContext: ctx.Server,
	}

	// Route table: inline, or from RDS.
	stripping := router.StripNoPort
	if p.GetStripAnyHostPort() {
		stripping = router.StripAnyPort
	} else if p.GetStripMatchingHostPort() {
		stripping = router.StripMatchingPort
	}
	if rc := p.GetRouteConfig(); rc != nil {
		// Routes to missing static clusters are reported by the bootstrap
		// cross-checks, positioned and once; checking again here would only
		// repeat them when a cluster failed to build.
		rctx := router.BuildContext{Path: path + ".route_config", FilterContext: fctx}
		table, err := router.Build(rc, rctx)
		if err != nil {
			errs = append(errs, configerr.Collect(err, path+".route_config", nil)...)
		} else {
			cfg.Routes = &resolver{table: table, stripping: stripping}
		}
	} else if rds := p.GetRds(); rds != nil {
		routes, err := buildRDS(rds, cfg.StatPrefix, stripping, fctx, ctx.Server, path+".rds")
		if err != nil {
			errs = append(errs, configerr.Collect(err, path+".rds", nil)...)
		} else {
			cfg.Routes = routes
		}
	} else if p.GetScopedRoutes() == nil {
		errs = append(errs, configerr.At(path+".route_config", "route_config is required"))
	}

	// HTTP filters.
	filters := p.GetHttpFilters()
	if len(filters) == 0 {
		errs = append(errs, configerr.At(path+".http_filters", "http_filters must end with envoy.filters.http.router"))
	}
	for i, hf := range filters {
		fpath := fmt.Sprintf("%s.http_filters[%d]", path, i)
		entry, fc, ferr := registry.Resolve(httpfilter.Registry, func(e *httpfilter.Entry) proto.Message { return e.NewConfig() },
			hf.GetName(), hf.GetTypedConfig(), fpath)
		if ferr != nil {
			if hf.GetIsOptional() {
				// Envoy: an optional filter that is not supported is skipped.
				continue
			}
			errs = append(errs, ferr)
			continue
		}
		last := i == len(filters)-1
		if entry.Terminal && !last {
			errs = append(errs, configerr.At(fpath, "%s is terminal and must be the last HTTP filter", entry.Name))
		}
		if !entry.Terminal && last {
			errs = append(errs, configerr.At(fpath, "the last HTTP filter must be terminal (envoy.filters.http.router), not %s", entry.Name))
		}
		bctx := fctx
		bctx.Path = fpath + ".typed_config"
		bctx.Name = hf.GetName()
		factory, err := entry.Build(fc, bctx)
		if err != nil {
			errs = append(errs, configerr.Collect(err, fpath+".typed_config", nil)...)
			continue
		}
		if hf.GetDisabled() && entry.Terminal {
			// Nothing would answer the routes that do not enable it.
			errs = append(errs, configerr.At(fpath+".disabled", "the terminal filter %s cannot be disabled", entry.Name))
			continue
		}
		// disabled: the filter runs only where a route, virtual host or
		// route configuration enables it through typed_per_filter_config
		// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto#envoy-v3-api-field-extensions-filters-network-http-connection-manager-v3-httpfilter-disabled).
		cfg.Filters = append(cfg.Filters, connmgr.FilterFactory{Name: hf.GetName(), Factory: factory, Disabled: hf.GetDisabled()})
	}

	// Access logs.
	logs, lerrs := accesslog.BuildAll(p.GetAccessLog(), path, ctx.Server)
	errs = append(errs, lerrs...)
	for _, l := range logs {
		cfg.AccessLogs = append(cfg.AccessLogs, l)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	if err := cfg.Prepare(); err != nil {
		return nil, configerr.At(path+".http2_protocol_options", "%v", err)
	}
	return &Filter{cfg: cfg}, nil
}

func durationOr(d *durationpb.Duration, dst *time.Duration) {
	if d != nil {
		*dst = d.AsDuration()
	}
}

// resolver adapts a route table to connmgr.RouteResolver.
type resolver struct {
	table     *router.Table
	stripping router.PortStripping
}

// Resolve implements connmgr.RouteResolver.
func (r *resolver) Resolve(h *hhttp.Headers, listenerPort uint16) httpfilter.Route {
	if r.stripping != router.StripNoPort {
		router.StripHostPort(h, r.stripping, uint32(listenerPort))
	}
	rt, _ := r.table.Match(h)
	if rt == nil {
		return nil
	}
	return rt
}
