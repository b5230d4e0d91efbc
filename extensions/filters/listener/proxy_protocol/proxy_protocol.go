package proxyprotocol

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ppv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/proxy_protocol/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/stats"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.listener.proxy_protocol"

func init() {
	listenerfilter.Register(listenerfilter.Extension[*ppv3.ProxyProtocol]{
		Name:   Name,
		Config: &ppv3.ProxyProtocol{},
		Build:  build,
	})
}

// Filter is a built proxy_protocol filter. Immutable.
type Filter struct {
	allowV1, allowV2 bool
	// allowWithout is allow_requests_without_proxy_protocol.
	allowWithout bool
	tlvs         tlvConfig
	stats        filterStats
}

var _ listenerfilter.Consumer = (*Filter)(nil)

// versionStats are proxy_proto.[<stat_prefix>.]versions.<v1|v2>.*.
type versionStats struct{ found, disallowed, error *stats.Counter }

// filterStats are Envoy's proxy_proto.* stats and the legacy
// downstream_cx_proxy_proto_error
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/proxy_protocol#statistics).
type filterStats struct {
	notFoundAllowed, notFoundDisallowed *stats.Counter
	legacyError                         *stats.Counter
	v1, v2                              versionStats
}

func build(cfg *ppv3.ProxyProtocol, ctx listenerfilter.BuildContext) (listenerfilter.Filter, error) {
	// tlv_location FILTER_STATE is refused by CheckFields (its default,
	// DYNAMIC_METADATA, is zero and so not "set"): herald's access log has
	// no %FILTER_STATE% to read it with yet.
	errs := configerr.CheckFields(cfg, ctx.Path, "allow_requests_without_proxy_protocol", "disallowed_versions", "stat_prefix",
		"rules", "pass_through_tlvs")
	for i, r := range cfg.GetRules() {
		p := fmt.Sprintf("%s.rules[%d]", ctx.Path, i)
		errs = append(errs, configerr.CheckFields(r, p, "tlv_type", "on_tlv_present")...)
		if r.GetOnTlvPresent() != nil {
			errs = append(errs, configerr.CheckFields(r.GetOnTlvPresent(), p+".on_tlv_present", "metadata_namespace", "key", "value_string_encoding")...)
		}
	}
	f := &Filter{allowV1: true, allowV2: true, allowWithout: cfg.GetAllowRequestsWithoutProxyProtocol(), tlvs: buildTLVConfig(cfg)}
	for _, v := range cfg.GetDisallowedVersions() {
		switch v {
		case corev3.ProxyProtocolConfig_V1:
			f.allowV1 = false
		case corev3.ProxyProtocolConfig_V2:
			f.allowV2 = false
		}
	}
	if !f.allowV1 && !f.allowV2 {
		// Envoy's message (proxy_protocol.cc, Config::Config).
		errs = append(errs, configerr.At(ctx.Path+".disallowed_versions", "Proxy Protocol filter is misconfigured: all proxy protocol versions are disallowed."))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	prefix := "proxy_proto."
	if p := cfg.GetStatPrefix(); p != "" {
		prefix += p + "."
	}
	sc := ctx.Stats.Scope(prefix)
	vs := func(v string) versionStats {
		s := ctx.Stats.Scope(fmt.Sprintf("%sversions.%s.", prefix, v))
		return versionStats{found: s.Counter("found"), disallowed: s.Counter("disallowed"), error: s.Counter("error")}
	}
	f.stats = filterStats{
		notFoundAllowed:    sc.Counter("not_found_allowed"),
		notFoundDisallowed: sc.Counter("not_found_disallowed"),
		legacyError:        ctx.Stats.Counter("downstream_cx_proxy_proto_error"),
		v1:                 vs("v1"),
		v2:                 vs("v2"),
	}
	return f, nil
}

// MaxReadBytes implements listenerfilter.Filter: the largest v2 header
// (its length field is 16 bits).
func (f *Filter) MaxReadBytes() int { return maxV2Len }

// OnData implements listenerfilter.Filter; the listener calls
// OnDataConsume instead.
func (f *Filter) OnData(c *network.Conn, data []byte) listenerfilter.Status {
	st, _ := f.OnDataConsume(c, data)
	return st
}

// OnDataConsume implements listenerfilter.Consumer: it parses the header,
// sets c.Remote and c.Local from it and consumes it. Envoy's
// Filter::onData: a malformed header closes the connection; a disallowed
// version is counted found and disallowed, and closes.
func (f *Filter) OnDataConsume(c *network.Conn, data []byte) (listenerfilter.Status, int) {
	if f.allowWithout && !(f.allowV2 && prefixOf(data, v2Sig)) && !(f.allowV1 && prefixOf(data, v1Sig)) {
		// Not (the start of) a header: pass the bytes through untouched.
		f.stats.notFoundAllowed.Inc()
		return listenerfilter.Continue, 0
	}
	h, err := parse(data)
	vs := &f.stats.v1
	allowed := f.allowV1
	if h.version == versionV2 {
		vs, allowed = &f.stats.v2, f.allowV2
	}
	if h.version != versionNone && !allowed {
		vs.found.Inc()
		vs.disallowed.Inc()
		return listenerfilter.Close, 0
	}
	switch err {
	case nil:
	case errIncomplete:
		return listenerfilter.NeedMoreData, 0
	default:
		if h.version == versionNone {
			f.stats.notFoundDisallowed.Inc()
		} else {
			vs.error.Inc()
		}
		f.stats.legacyError.Inc()
		return listenerfilter.Close, 0
	}
	vs.found.Inc()
	f.tlvs.apply(c, h, v2TLVs(data, h))
	if !h.keep {
		c.Remote, c.Local = h.src, h.dst
	}
	return listenerfilter.Continue, h.length
}
