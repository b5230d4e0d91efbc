package http1

import (
	"errors"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// Envoy's response_code_details for HTTP/1 codec errors, as declared in
// source/common/http/http1/codec_impl.cc (Http1ResponseCodeDetailValues) and
// source/common/http/header_utility.cc (SharedResponseCodeDetailsValues), and
// listed at
// https://www.envoyproxy.io/docs/envoy/latest/configuration/http/http_conn_man/response_code_details#per-codec-details
const (
	// DetailsCodecError: the parser rejected the message (bad request line,
	// bad header name, bad chunk size, repeated Content-Length...). Envoy
	// maps every Balsa error without a more specific detail to it.
	DetailsCodecError = "http1.codec_error"
	// DetailsHeadersTooLarge: the request line plus headers exceed
	// max_request_headers_kb (431).
	DetailsHeadersTooLarge = "http1.headers_too_large"
	// DetailsTooManyHeaders: more than max_headers_count headers (431).
	DetailsTooManyHeaders = "http1.too_many_headers"
	// DetailsInvalidCharacters: a header value holds a control character.
	DetailsInvalidCharacters = "http1.invalid_characters"
	// DetailsInvalidURL: the request-target is neither origin-form,
	// absolute-form, authority-form (CONNECT) nor "*" (OPTIONS).
	DetailsInvalidURL = "http1.invalid_url"
	// DetailsInvalidScheme: absolute-form with a scheme other than http or
	// https.
	DetailsInvalidScheme = "http1.invalid_scheme"
	// DetailsHTTPSInPlaintext: absolute-form https URL on a plaintext
	// connection (403).
	DetailsHTTPSInPlaintext = "http1.https_url_on_plaintext_connection"
	// DetailsInvalidTransferEncoding: a transfer-coding other than chunked,
	// or Transfer-Encoding on CONNECT (501).
	DetailsInvalidTransferEncoding = "http1.invalid_transfer_encoding"
	// DetailsChunkedContentLength: both Transfer-Encoding and Content-Length
	// (400 unless allow_chunked_length).
	DetailsChunkedContentLength = "http1.content_length_and_chunked_not_allowed"
	// DetailsBodyDisallowed: CONNECT with a non-zero Content-Length.
	DetailsBodyDisallowed = "http1.body_disallowed"
	// DetailsInvalidAuthority: a Host header with invalid characters, or
	// more than one Host header.
	DetailsInvalidAuthority = "http.invalid_authority"
)

// ErrIdleTimeout is returned by Serve when the connection was closed because
// no request started within ServerOptions.IdleTimeout (Envoy's
// downstream_cx_idle_timeout).
var ErrIdleTimeout = errors.New("http1: idle timeout")

// ErrProtocol is wrapped by every error ClientConn returns for a malformed
// upstream response; the router maps it to 502 (Envoy: upstream protocol
// error, response flag UPE).
var ErrProtocol = errors.New("http1: upstream protocol error")

// errResponseComplete is returned by stream writes after the response ended.
var errResponseComplete = errors.New("http1: response already complete")

func codecErr(status int, details string, msg string) *hhttp.CodecError {
	return &hhttp.CodecError{Status: status, Details: details, Err: errors.New("http1: " + msg)}
}

func badRequest(msg string) *hhttp.CodecError { return codecErr(400, DetailsCodecError, msg) }
