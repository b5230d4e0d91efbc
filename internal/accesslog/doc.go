// Package accesslog owns access logging: the command-operator formatter
// (%REQ(...)%, %RESPONSE_CODE%, %RESPONSE_FLAGS%...) in text and JSON form,
// compiled once per config and run per log line without allocating; the
// AccessLog filters; the process-wide FileManager that buffers and flushes
// log files; and the access-logger extension API (Logger, Extension,
// Register, Build) that extensions/access_loggers/* implement.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage
// and https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/accesslog/v3/accesslog.proto
//
// Command operators (see the operators table in formatter.go): START_TIME
// (with strftime, %s, %f, %1f..%9f), REQ/REQUEST_HEADER, RESP/RESPONSE_HEADER,
// TRAILER/RESPONSE_TRAILER (X?Y and :Z), RESPONSE_CODE, RESPONSE_CODE_DETAILS,
// CONNECTION_TERMINATION_DETAILS, RESPONSE_FLAGS, RESPONSE_FLAGS_LONG,
// BYTES_RECEIVED, BYTES_SENT, UPSTREAM_WIRE_BYTES_SENT/RECEIVED, DURATION,
// REQUEST_DURATION, REQUEST_TX_DURATION, RESPONSE_DURATION,
// RESPONSE_TX_DURATION, PROTOCOL, UPSTREAM_HOST, UPSTREAM_REMOTE_ADDRESS
// (+_WITHOUT_PORT, UPSTREAM_REMOTE_PORT), UPSTREAM_CLUSTER,
// UPSTREAM_LOCAL_ADDRESS (+_WITHOUT_PORT, UPSTREAM_LOCAL_PORT),
// UPSTREAM_TRANSPORT_FAILURE_REASON, UPSTREAM_REQUEST_ATTEMPT_COUNT,
// DOWNSTREAM_{REMOTE,LOCAL,DIRECT_REMOTE}_ADDRESS (+_WITHOUT_PORT, _PORT),
// ROUTE_NAME, VIRTUAL_CLUSTER_NAME, REQUESTED_SERVER_NAME, STREAM_ID,
// CONNECTION_ID, HOSTNAME, ENVIRONMENT(X):Z, and %% for a literal '%'. Any
// other operator is a config error naming it.
//
// Filters: status_code_filter, duration_filter, not_health_check_filter,
// and_filter, or_filter, response_flag_filter, header_filter. Any other is a
// config error naming it.
//
// It must not import extensions/ nor net/http.
package accesslog
