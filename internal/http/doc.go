// Package http is herald's codec-neutral HTTP stream model and connection
// manager engine: ordered headers with pseudo-headers, streamed bodies with
// end-of-stream, trailers; the HTTP filter manager (decode in order, encode in
// reverse); local replies with Envoy's bodies and response_code_details.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http_connection_management
//
// It must not import net/http (codecs translate to and from this model) nor
// anything under extensions/.
package http
