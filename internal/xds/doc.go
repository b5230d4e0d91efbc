// Package xds is herald's xDS client: it subscribes to listeners, routes,
// clusters, endpoints and secrets from a control plane over gRPC (state of
// the world and delta, per-type streams or one aggregated ADS stream) or
// from a file on disk, validates every resource, hands the current set to
// the caller and acknowledges or rejects (NACK with error_detail) each
// response. It does not build or apply configuration: the caller's Apply
// callback does that and says whether the update is good.
//
// Envoy pages it implements:
//   - https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol
//     (SotW and delta variants, ADS, ACK/NACK with version_info,
//     response_nonce and error_detail, resource_names, wildcard, reconnect)
//   - https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/config_source.proto
//     (ConfigSource: path, path_config_source, api_config_source, ads,
//     initial_fetch_timeout, resource_api_version)
//   - https://www.envoyproxy.io/docs/envoy/latest/configuration/overview/mgmt_server
//     (subscription and control_plane statistics)
//
// Goroutines: a gRPC Mux runs one goroutine for its stream plus one that
// reads it; Apply is called on the stream goroutine, one update at a time.
// A file subscription runs one polling goroutine. Everything stops when the
// context given to Start ends or Stop/Close is called.
//
// It imports bootstrap (to parse resource files and validate resources),
// configerr and stats of herald's packages; it must not import server,
// listener, upstream, snapshot, extensions/ or net/http.
package xds
