package bootstrap

import (
	"regexp"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// This file is the one table of v2 API forms that v3 removed, so that a v2
// config (common in old tutorials) fails with what to write instead rather
// than a bare "unknown field". Envoy's own v2 → v3 notes:
// https://www.envoyproxy.io/docs/envoy/latest/faq/api/envoy_v3 and
// https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol (type URLs).
//
// Every entry here must be a field that v3 does not have; legacy_test.go
// checks that, so the table can never hide a real field.

const (
	tlsSocketHint = "use transport_socket: {name: envoy.transport_sockets.tls, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.%s, ...}}"
	typedHint     = "use typed_config with \"@type\" naming the v3 config message"
)

// legacyFields maps a v3 message and a field name v2 had there to the hint.
var legacyFields = map[protoreflect.FullName]map[string]string{
	"envoy.config.listener.v3.FilterChain": {
		"tls_context": strings.Replace(tlsSocketHint, "%s", "DownstreamTlsContext", 1),
	},
	"envoy.config.cluster.v3.Cluster": {
		"hosts":                      "use load_assignment: {cluster_name: ..., endpoints: [{lb_endpoints: [{endpoint: {address: ...}}]}]}",
		"tls_context":                strings.Replace(tlsSocketHint, "%s", "UpstreamTlsContext", 1),
		"extension_protocol_options": "use typed_extension_protocol_options",
	},
	"envoy.config.listener.v3.Filter": {
		"config": typedHint,
	},
	"envoy.config.listener.v3.ListenerFilter": {
		"config": typedHint,
	},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter": {
		"config": typedHint,
	},
	"envoy.config.accesslog.v3.AccessLog": {
		"config": typedHint,
	},
	"envoy.config.core.v3.TransportSocket": {
		"config": typedHint,
	},
	"envoy.config.route.v3.VirtualHost": {
		"per_filter_config": "use typed_per_filter_config",
	},
	"envoy.config.route.v3.Route": {
		"per_filter_config": "use typed_per_filter_config",
	},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight": {
		"per_filter_config": "use typed_per_filter_config",
	},
	"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager": {
		"idle_timeout": "use common_http_protocol_options.idle_timeout",
	},
	"envoy.config.bootstrap.v3.Bootstrap": {
		"runtime": "use layered_runtime",
	},
}

// legacyField returns the hint for field name of message md when v2 had it.
func legacyField(md protoreflect.FullName, name string) (string, bool) {
	h, ok := legacyFields[md][name]
	return h, ok
}

// legacyTypes maps v2 message names to their v3 successors where the rule in
// legacyTypeURL does not derive them.
var legacyTypes = map[string]string{
	"envoy.api.v2.auth.DownstreamTlsContext":            "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
	"envoy.api.v2.auth.UpstreamTlsContext":              "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
	"envoy.api.v2.auth.Secret":                          "envoy.extensions.transport_sockets.tls.v3.Secret",
	"envoy.api.v2.Cluster":                              "envoy.config.cluster.v3.Cluster",
	"envoy.api.v2.Listener":                             "envoy.config.listener.v3.Listener",
	"envoy.api.v2.RouteConfiguration":                   "envoy.config.route.v3.RouteConfiguration",
	"envoy.api.v2.ClusterLoadAssignment":                "envoy.config.endpoint.v3.ClusterLoadAssignment",
	"envoy.api.v2.ScopedRouteConfiguration":             "envoy.config.route.v3.ScopedRouteConfiguration",
	"envoy.config.accesslog.v2.FileAccessLog":           "envoy.extensions.access_loggers.file.v3.FileAccessLog",
	"envoy.config.accesslog.v2.HttpGrpcAccessLogConfig": "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
	"envoy.config.bootstrap.v2.Bootstrap":               "envoy.config.bootstrap.v3.Bootstrap",
}

// v2Filter matches v2 filter config names:
// envoy.config.filter.<kind>.<name>.<v2|v2alpha|v2alpha1|v3alpha>.<Message>.
var v2Filter = regexp.MustCompile(`^envoy\.config\.filter\.(network|http|listener|udp|thrift|dubbo)\.([a-z0-9_]+)\.v2[a-z0-9]*\.([A-Za-z0-9_.]+)$`)

// legacyTypeURL reports whether url names a v2 API message and returns the
// v3 type URL to use instead (or a generic hint when there is no direct one).
func legacyTypeURL(url string) (string, bool) {
	i := strings.LastIndexByte(url, '/')
	prefix, name := url[:i+1], url[i+1:]
	if !isV2Name(name) {
		return "", false
	}
	var cands []string
	if v3, ok := legacyTypes[name]; ok {
		cands = append(cands, v3)
	}
	if m := v2Filter.FindStringSubmatch(name); m != nil {
		cands = append(cands, "envoy.extensions.filters."+m[1]+"."+m[2]+".v3."+m[3])
		if m[1] == "thrift" || m[1] == "dubbo" {
			cands = append(cands, "envoy.extensions.filters.network."+m[1]+"_proxy.filters."+m[2]+".v3."+m[3])
		}
	}
	for _, c := range cands {
		if _, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(c)); err == nil {
			return prefix + c, true
		}
	}
	return "the v3 message (envoy.extensions.* or envoy.config.*.v3)", true
}

func isV2Name(name string) bool {
	return strings.HasPrefix(name, "envoy.api.v2.") ||
		strings.HasPrefix(name, "envoy.config.filter.") ||
		strings.Contains(name, ".v2.") || strings.Contains(name, ".v2alpha")
}
