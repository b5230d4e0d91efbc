package router

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/herald-proxy/herald/internal/configerr"
)

// configerr.NotSupported is the message of every unsupported-field error (STYLE §5).

// unsupportedFields is the one list of route-configuration fields herald
// accepts in Envoy's schema but does not implement yet. Build rejects a
// message in which any of them is set (proto3 presence: a non-default scalar,
// a non-empty list or map, a set message or oneof member), naming the field.
// TestUnsupportedFieldsExist checks that every name exists in its message.
//
// Deliberately absent from the list, with the reason:
//   - Route.decorator: tracing only; herald has no tracer, Envoy's decorator
//     has no effect without one.
//   - RouteAction.hash_policy: compiled (Route.HashPolicy) and evaluated
//     only when the cluster's load balancer hashes (ring_hash, maglev),
//     exactly as Envoy; round_robin and the others ignore it.
//   - retry_policy, include_request_attempt_count,
//     include_attempt_count_in_response, per_request_buffer_limit_bytes:
//     compiled in retry_policy.go, which refuses by name the RetryPolicy
//     fields herald does not implement.
//   - request_mirror_policies (RouteConfiguration, VirtualHost,
//     RouteAction), RouteAction.priority and hedge_policy (VirtualHost,
//     RouteAction): compiled in mirror_route.go; mirror.go refuses the
//     RequestMirrorPolicy fields herald does not implement, hedge.go the
//     HedgePolicy ones Envoy does not implement either (initial_requests,
//     additional_request_chance).
//   - RouteAction.upgrade_configs: compiled in upgrade.go, which refuses
//     connect_config (CONNECT termination) by name.
//   - WeightedCluster.total_weight: deprecated; Envoy uses the sum of the
//     weights and so does herald.
var unsupportedFields = map[protoreflect.FullName][]protoreflect.Name{
	"envoy.config.route.v3.RouteConfiguration": {
		"vhds", "cluster_specifier_plugins",
		"route_specifiers", "vhost_header",
	},
	"envoy.config.route.v3.VirtualHost": {
		"matcher", "require_tls", "virtual_clusters", "cors",
		"retry_policy_typed_config",
		"include_is_timeout_retry_header",
		"request_body_buffer_limit", "route_specifiers",
	},
	"envoy.config.route.v3.Route": {
		"filter_action", "non_forwarding_action", "tracing",
		"stat_prefix",
		"request_body_buffer_limit", "route_specifiers",
	},
	"envoy.config.route.v3.RouteMatch": {
		"path_match_policy", "runtime_fraction", "cookies",
		"tls_context", "dynamic_metadata", "filter_state",
	},
	"envoy.config.route.v3.RouteAction": {
		"cluster_specifier_plugin", "inline_cluster_specifier_plugin",
		"metadata_match", "path_rewrite_policy", "path_rewrite", "host_rewrite",
		"flush_timeout", "early_data_policy",
		"retry_policy_typed_config",
		"cors", "max_grpc_timeout",
		"grpc_timeout_offset", "internal_redirect_policy",
		"internal_redirect_action", "max_internal_redirects",
	},
	"envoy.config.route.v3.WeightedCluster": {
		"runtime_key_prefix", "use_hash_policy",
	},
	"envoy.config.route.v3.WeightedCluster.ClusterWeight": {
		"metadata_match",
	},
	"envoy.config.route.v3.RedirectAction": {
		"path_rewrite",
	},
	"envoy.config.route.v3.DirectResponseAction": {
		"body_format",
	},
	"envoy.config.core.v3.DataSource": {
		"watched_directory",
	},
}

// checkUnsupported appends an error for every field of m named in
// unsupportedFields that is set; path is m's field path.
func checkUnsupported(m proto.Message, path string, errs *configerr.List) {
	r := m.ProtoReflect()
	if !r.IsValid() {
		return
	}
	desc := r.Descriptor()
	for _, name := range unsupportedFields[desc.FullName()] {
		fd := desc.Fields().ByName(name)
		if fd != nil && r.Has(fd) {
			*errs = append(*errs, configerr.At(path+"."+string(name), configerr.NotSupported))
		}
	}
}
