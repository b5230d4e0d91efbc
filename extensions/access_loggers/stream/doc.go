// Package stream implements envoy.access_loggers.stdout and
// envoy.access_loggers.stderr: access log lines, formatted with Envoy's
// command operators, written to the process's standard output or standard
// error through the buffered accesslog.FileManager.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/access_loggers/stream/v3/stream.proto
//
// It imports internal/accesslog only; it must not import other extensions
// nor net/http.
package stream
