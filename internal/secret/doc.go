// Package secret is herald's secret manager: the static secrets of the
// bootstrap (static_resources.secrets) and the SDS providers that follow a
// secret from a config source (a file, a gRPC stream or ADS, through
// internal/xds). A provider reads the certificate files a secret names,
// watches them for rotation, and hands each new version to the TLS contexts
// that follow it (internal/tlsx), which build it before it is accepted: a
// version that does not build is rejected (NACK, update_rejected or
// key_rotation_failed) and the previous one keeps serving.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/security/secret
// (source/common/secret: SecretManagerImpl, SdsApi).
//
// It imports internal/xds, internal/stats and internal/configerr; it must
// not import tlsx, server, listener, upstream, extensions/ nor net/http.
package secret
