// Package file implements envoy.access_loggers.file: each finished stream or
// connection is formatted with Envoy's command operators and appended to a
// file, through the process's buffered accesslog.FileManager.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/access_loggers/file/v3/file.proto
//
// It imports internal/accesslog only; it must not import other extensions
// nor net/http.
package file
