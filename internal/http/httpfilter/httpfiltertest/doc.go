// Package httpfiltertest is for tests only: a fake httpfilter.Callbacks that
// runs one filter as a stream and records its local replies, fake routes
// carrying typed_per_filter_config, and helpers that parse YAML config
// fragments as the loader does. HTTP filter extensions use it from their
// _test.go files; no non-test code may import it.
//
// It must not import extensions/ nor net/http.
package httpfiltertest
