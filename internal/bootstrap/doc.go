// Package bootstrap loads an Envoy v3 bootstrap the way Envoy does: a -c file
// (YAML, or JSON by extension) merged with --config-yaml, unmarshalled into
// go-control-plane's protos, validated with their generated ValidateAll (also
// inside every google.protobuf.Any), and cross-checked (duplicate names,
// duplicate listener addresses, routes to missing clusters). Every error of
// a load is reported at once as a configerr.List, each with file:line:col and
// the field path in the YAML spelling; the Index maps such paths back to
// positions for later stages (snapshot build) too.
//
// Envoy pages implemented:
// https://www.envoyproxy.io/docs/envoy/latest/operations/cli (-c, --config-yaml),
// https://www.envoyproxy.io/docs/envoy/latest/configuration/overview/bootstrap,
// https://www.envoyproxy.io/docs/envoy/latest/configuration/overview/extension (typed_config).
//
// It imports configerr only of herald's packages; it must not import
// snapshot, server, extensions/ or anything that builds runtime objects.
package bootstrap
