// Package http3 is herald's HTTP/3 server codec: it presents every request
// stream of an accepted QUIC connection as an hhttp.ServerStream, so that
// HTTP/3 requests run through the same connection manager, HTTP filters and
// router as HTTP/1.1 and HTTP/2 ones. QUIC, QPACK and HTTP/3 framing are
// github.com/quic-go/quic-go and its http3 package; this package adapts
// quic-go's per-request handler (one goroutine per stream, the same model
// as herald's HTTP/2 server) to the stream model.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/http3
//
// Mapping, and where it differs from herald's own codecs:
//   - Request pseudo-headers come first (:method, :scheme from
//     ServerOptions.Scheme, :authority, :path), then the regular fields
//     lowercase; quic-go decodes them into a map, so their order between
//     distinct names is not the wire order.
//   - Request trailers are available after ReadBody returned io.EOF.
//   - quic-go does not expose whether HEADERS came with FIN: requests with
//     content-length: 0, and GET/HEAD/DELETE/OPTIONS/TRACE requests whose
//     one-byte read-ahead finds the end, are dispatched headers-only
//     (RequestEndStream); other requests read io.EOF when their body ends.
//   - Response headers are written in the order given; connection-specific
//     fields are dropped (RFC 9114 §4.2). quic-go's Date and Content-Type
//     sniffing are disabled, the connection manager owns both.
//   - Drain sends GOAWAY and, after ServerOptions.DrainTimeout, closes the
//     connection once no stream is active (Envoy's drain sequence). A stream's CloseConnWhenIdle (a refused upgrade) sends
//     GOAWAY and closes once no stream is left (upgrade.go).
//   - With ServerOptions.HTTP3.AllowExtendedConnect an extended CONNECT
//     (RFC 9220) is presented as an HTTP/1.1 upgrade and its 101 sent as
//     200, as Envoy does; without it the request is an invalid message
//     (upgrade.go).
//   - Requests received in 0-RTT are served as any other (quic-go's and
//     Envoy's HTTP/3 servers leave the choice of what to send early to the
//     client); whether 0-RTT is accepted is the QUIC transport socket's
//     enable_early_data.
//
// Only this package (and the other codecs) may import net/http; it must
// not import extensions/.
package http3
