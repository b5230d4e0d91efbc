package bootstrap

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// TestLegacyFieldsAreNotV3Fields guards the v2 table: an entry for a field
// v3 still has would turn a valid config into an error.
func TestLegacyFieldsAreNotV3Fields(t *testing.T) {
	for msg, fields := range legacyFields {
		d, err := protoregistry.GlobalFiles.FindDescriptorByName(msg)
		if err != nil {
			t.Errorf("legacy table names message %s, which is not registered: %v", msg, err)
			continue
		}
		md, ok := d.(protoreflect.MessageDescriptor)
		if !ok {
			t.Errorf("%s is not a message", msg)
			continue
		}
		for name := range fields {
			if md.Fields().ByName(protoreflect.Name(name)) != nil {
				t.Errorf("legacy table lists %s.%s, but v3 has that field", msg, name)
			}
		}
	}
}

func TestLegacyTypeURL(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		want   string
		wantOK bool
	}{
		{name: "v2 HCM", url: "type.googleapis.com/envoy.config.filter.network.http_connection_manager.v2.HttpConnectionManager", want: "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager", wantOK: true},
		{name: "v2 router", url: "type.googleapis.com/envoy.config.filter.http.router.v2.Router", want: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", wantOK: true},
		{name: "v2 file access log", url: "type.googleapis.com/envoy.config.accesslog.v2.FileAccessLog", want: "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog", wantOK: true},
		{name: "v2 downstream TLS", url: "type.googleapis.com/envoy.api.v2.auth.DownstreamTlsContext", want: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext", wantOK: true},
		{name: "v2 without a v3 twin", url: "type.googleapis.com/envoy.config.filter.http.gone.v2.Gone", want: "the v3 message (envoy.extensions.* or envoy.config.*.v3)", wantOK: true},
		{name: "v3 is not legacy", url: "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router", want: "", wantOK: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := legacyTypeURL(tc.url)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("legacyTypeURL(%s) = %q, %v; want %q, %v", tc.url, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// TestTypesRegistered checks that the config messages of the extensions
// herald implements or plans (STYLE.md §1) resolve from a type URL, which
// types.go's blank imports provide.
func TestTypesRegistered(t *testing.T) {
	urls := []string{
		"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
		"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
		"envoy.extensions.filters.network.rbac.v3.RBAC",
		"envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit",
		"envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
		"envoy.extensions.filters.listener.http_inspector.v3.HttpInspector",
		"envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
		"envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
		"envoy.extensions.filters.http.router.v3.Router",
		"envoy.extensions.filters.http.buffer.v3.Buffer",
		"envoy.extensions.filters.http.cors.v3.Cors",
		"envoy.extensions.filters.http.fault.v3.HTTPFault",
		"envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
		"envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
		"envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
		"envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
		"envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
		"envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
		"envoy.extensions.access_loggers.file.v3.FileAccessLog",
		"envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
		"envoy.extensions.access_loggers.open_telemetry.v3.OpenTelemetryAccessLogConfig",
		"envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin",
		"envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest",
		"envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash",
		"envoy.extensions.load_balancing_policies.maglev.v3.Maglev",
		"envoy.extensions.load_balancing_policies.random.v3.Random",
		"envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
		"envoy.extensions.clusters.aggregate.v3.ClusterConfig",
		"envoy.extensions.health_checkers.redis.v3.Redis",
		"envoy.config.trace.v3.OpenTelemetryConfig",
		"xds.type.v3.TypedStruct",
		"udpa.type.v1.TypedStruct",
	}
	for _, u := range urls {
		if _, err := protoregistry.GlobalTypes.FindMessageByURL("type.googleapis.com/" + u); err != nil {
			t.Errorf("%s is not registered: %v", u, err)
		}
	}
}
