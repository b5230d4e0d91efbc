package rbac

import (
	"log/slog"
	"time"

	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/netfilter"
	rbacengine "github.com/herald-proxy/herald/internal/rbac"
	"github.com/herald-proxy/herald/internal/stats"
)

func init() {
	netfilter.Register(netfilter.Extension[*rbacnetv3.RBAC]{
		Name:   Name,
		Config: &rbacnetv3.RBAC{},
		Build:  Build,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.network.rbac"

// supported are the RBAC fields herald interprets; any other set field is
// an error naming it.
var supported = []string{"rules", "shadow_rules", "shadow_rules_stat_prefix", "stat_prefix", "enforcement_type", "delay_deny"}

var unsupportedIssues = map[string]string{"matcher": "#5", "shadow_matcher": "#5"}

// Kinds are the Permission and Principal cases the network filter accepts:
// every connection-level matcher of internal/rbac. Envoy refuses header
// rules in the network filter (network/rbac/config.cc: "Found header(...)
// rule, not supported by RBAC network filter"); url_path compiles but never
// matches, as there is no request.
var Kinds = rbacengine.Kinds{
	Permissions: []string{
		"any", "url_path", "destination_ip", "destination_port", "destination_port_range",
		"and_rules", "or_rules", "not_rule", "requested_server_name",
	},
	Principals: []string{
		"any", "direct_remote_ip", "remote_ip", "source_ip", "url_path", "authenticated",
		"and_ids", "or_ids", "not_id",
	},
	Refused: map[string]string{"header": "header rules are not supported by the RBAC network filter (Envoy refuses them too)"},
}

// Filter is a built network RBAC. Immutable after Build.
type Filter struct {
	enforced, shadow *rbacengine.Engine
	delayDeny        time.Duration
	// needsCert: some rule reads the peer certificate (authenticated
	// principals), so OnNewConnection asks the TLS connection for it.
	needsCert bool
	// Envoy's generateStats: statPrefixJoin(stat_prefix, "rbac.") +
	// [shadow_rules_stat_prefix], rooted at the server scope.
	allowed, denied             *stats.Counter
	shadowAllowed, shadowDenied *stats.Counter
}

var _ netfilter.ConnectionFilter = (*Filter)(nil)

// Build interprets a network RBAC config once per snapshot.
func Build(cfg *rbacnetv3.RBAC, ctx netfilter.BuildContext) (netfilter.Filter, error) {
	errs := configerr.RejectUnlisted(cfg, ctx.Path, unsupportedIssues, supported...)
	if cfg.GetStatPrefix() == "" {
		errs = append(errs, configerr.At(ctx.Path+".stat_prefix", "stat_prefix is required"))
	}
	f := &Filter{
		enforced: rbacengine.Compile(cfg.GetRules(), ctx.Path+".rules", Kinds, &errs),
		shadow:   rbacengine.Compile(cfg.GetShadowRules(), ctx.Path+".shadow_rules", Kinds, &errs),
	}
	// Both enforcement types decide the same way in herald: every
	// matcher it supports reads properties fixed for the connection's
	// life (addresses, SNI, peer certificate; no dynamic metadata), so
	// re-evaluating at each message boundary (CONTINUOUS) cannot change
	// the outcome. The decision is taken once.
	switch cfg.GetEnforcementType() {
	case rbacnetv3.RBAC_ONE_TIME_ON_FIRST_BYTE, rbacnetv3.RBAC_CONTINUOUS:
	default:
		errs = append(errs, configerr.At(ctx.Path+".enforcement_type", "unknown value %v", cfg.GetEnforcementType()))
	}
	f.needsCert = f.enforced.UsesTLS() || f.shadow.UsesTLS()
	if d := cfg.GetDelayDeny(); d != nil {
		f.delayDeny = d.AsDuration()
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	base := stats.JoinPrefix(cfg.GetStatPrefix(), "rbac.")
	f.allowed = ctx.Stats.Counter(base + "allowed")
	f.denied = ctx.Stats.Counter(base + "denied")
	f.shadowAllowed = ctx.Stats.Counter(base + cfg.GetShadowRulesStatPrefix() + "shadow_allowed")
	f.shadowDenied = ctx.Stats.Counter(base + cfg.GetShadowRulesStatPrefix() + "shadow_denied")
	return f, nil
}

// request builds what the engine matches from the connection; the peer
// certificate only when cert is set (ConnectionState takes the TLS
// connection's lock and copies its state).
func request(c *network.Conn, cert bool) rbacengine.Request {
	q := rbacengine.Request{
		Remote: c.Remote,
		Direct: c.DirectRemote,
		Local:  c.Local,
		SNI:    c.ServerName,
		TLS:    c.TLS,
	}
	if cert {
		q.PeerCert = c.PeerCertificate()
	}
	return q
}

// OnNewConnection implements netfilter.ConnectionFilter: Envoy's
// RoleBasedAccessControlFilter::onData for the first byte. herald decides
// once the connection is accepted and its TLS handshake (if any) is done,
// before the terminal filter sees it, so a denied client never reaches the
// upstream (Envoy decides when the first byte arrives). The shadow engine
// counts; the enforced engine decides; a denied connection is closed, after
// delay_deny when set.
func (f *Filter) OnNewConnection(c *network.Conn) bool {
	if f.enforced == nil && f.shadow == nil {
		return true
	}
	q := request(c, f.needsCert)
	if f.shadow != nil {
		if ok, _ := f.shadow.Handle(&q); ok {
			f.shadowAllowed.Inc()
		} else {
			f.shadowDenied.Inc()
		}
	}
	if f.enforced == nil {
		return true
	}
	ok, details := f.enforced.Handle(&q)
	if ok {
		f.allowed.Inc()
		return true
	}
	f.denied.Inc()
	slog.Debug("rbac: connection denied", "filter", Name, "listener", c.ListenerName,
		"remote", c.Remote.String(), "details", details)
	if f.delayDeny > 0 {
		t := time.NewTimer(f.delayDeny)
		select {
		case <-t.C:
		case <-c.Ctx.Done():
			t.Stop()
		}
	}
	return false
}
