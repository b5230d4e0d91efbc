package snapshot

import (
	"fmt"
	"net/netip"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/listener"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
	"github.com/herald-proxy/herald/internal/network/transportsocket"
	"github.com/herald-proxy/herald/internal/registry"
)

// chainMatchFields are the FilterChainMatch fields herald implements: all
// Envoy implements (address_suffix and suffix_len are "unimplemented
// fields" in Envoy too).
var chainMatchFields = []string{
	"destination_port", "prefix_ranges", "server_names", "transport_protocol", "application_protocols",
	"direct_source_prefix_ranges", "source_type", "source_prefix_ranges", "source_ports",
}

func orEmptyMatch(m *listenerv3.FilterChainMatch) *listenerv3.FilterChainMatch {
	if m == nil {
		return &listenerv3.FilterChainMatch{}
	}
	return m
}

// buildChainMatch decodes a filter_chain_match (nil matches everything).
func buildChainMatch(m *listenerv3.FilterChainMatch, path string) (listener.ChainMatch, configerr.List) {
	var out listener.ChainMatch
	if m == nil {
		return out, nil
	}
	// address_suffix and suffix_len are refused by the allow-list; Envoy
	// refuses them too ("contains unimplemented fields").
	errs := configerr.RejectUnlisted(m, path, nil, chainMatchFields...)
	if p := m.GetDestinationPort(); p != nil {
		out.DestinationPort = p.GetValue()
	}
	out.PrefixRanges = cidrs(m.GetPrefixRanges(), path+".prefix_ranges", &errs)
	out.DirectSourcePrefixRanges = cidrs(m.GetDirectSourcePrefixRanges(), path+".direct_source_prefix_ranges", &errs)
	out.SourcePrefixRanges = cidrs(m.GetSourcePrefixRanges(), path+".source_prefix_ranges", &errs)
	for i, n := range m.GetServerNames() {
		// Envoy: "partial wildcards are not supported in \"server_names\"";
		// names are compared lowercase.
		if strings.Contains(n, "*") && !strings.HasPrefix(n, "*.") || strings.Count(n, "*") > 1 {
			errs = append(errs, configerr.At(fmt.Sprintf("%s.server_names[%d]", path, i), "partial wildcards are not supported in \"server_names\""))
			continue
		}
		out.ServerNames = append(out.ServerNames, strings.ToLower(n))
	}
	out.TransportProtocol = m.GetTransportProtocol()
	out.ApplicationProtocols = m.GetApplicationProtocols()
	out.SourceType = listener.SourceType(m.GetSourceType())
	out.SourcePorts = m.GetSourcePorts()
	return out, errs
}

func cidrs(rs []*corev3.CidrRange, path string, errs *configerr.List) []netip.Prefix {
	var out []netip.Prefix
	for i, r := range rs {
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			*errs = append(*errs, configerr.At(fmt.Sprintf("%s[%d].address_prefix", path, i), "malformed IP address: %s", r.GetAddressPrefix()))
			continue
		}
		bits := int(r.GetPrefixLen().GetValue())
		p, err := a.Unmap().Prefix(bits)
		if err != nil {
			*errs = append(*errs, configerr.At(fmt.Sprintf("%s[%d].prefix_len", path, i), "invalid prefix length %d for %s", bits, a))
			continue
		}
		out = append(out, p)
	}
	return out
}

// knownListenerFilterIssues are Envoy listener filters herald does not
// build yet, each with the issue that tracks it (none at the moment).
var knownListenerFilterIssues = map[string]string{}

func buildListenerFilters(l *listenerv3.Listener, path string, deps Deps) ([]listenerfilter.Filter, configerr.List) {
	var out []listenerfilter.Filter
	var errs configerr.List
	for i, lf := range l.GetListenerFilters() {
		fpath := fmt.Sprintf("%s.listener_filters[%d]", path, i)
		errs = append(errs, configerr.RejectUnlisted(lf, fpath, nil, "name", "typed_config")...)
		if is := knownListenerFilterIssues[lf.GetName()]; is != "" {
			errs = append(errs, configerr.At(fpath, "listener filter %s is not supported by herald yet (%s)", lf.GetName(), is))
			continue
		}
		entry, cfg, ferr := registry.Resolve(listenerfilter.Registry, func(e *listenerfilter.Entry) proto.Message { return e.NewConfig() },
			lf.GetName(), lf.GetTypedConfig(), fpath)
		if ferr != nil {
			errs = append(errs, ferr)
			continue
		}
		f, err := entry.Build(cfg, listenerfilter.BuildContext{Path: fpath + ".typed_config", ListenerName: l.GetName(), Stats: deps.Stats})
		if err != nil {
			errs = append(errs, configerr.Collect(err, fpath+".typed_config", nil)...)
			continue
		}
		out = append(out, f)
	}
	return out, errs
}

// buildDownstreamTransport builds a filter chain's transport_socket; nil
// for raw_buffer (herald's plaintext default, as Envoy's).
func buildDownstreamTransport(ts *corev3.TransportSocket, path string, deps Deps) (transportsocket.Downstream, configerr.List) {
	if ts.GetName() == transportsocket.RawBufferName && ts.GetTypedConfig() == nil ||
		ts.GetTypedConfig().GetTypeUrl() == "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer" {
		return nil, nil
	}
	entry, cfg, ferr := registry.Resolve(transportsocket.DownstreamRegistry, func(e *transportsocket.DownstreamEntry) proto.Message { return e.NewConfig() },
		ts.GetName(), ts.GetTypedConfig(), path)
	if ferr != nil {
		return nil, configerr.List{ferr}
	}
	d, err := entry.Build(cfg, transportsocket.BuildContext{Path: path + ".typed_config", Stats: deps.Stats, Secrets: deps.Secrets})
	if err != nil {
		return nil, configerr.Collect(err, path+".typed_config", nil)
	}
	return d, nil
}
