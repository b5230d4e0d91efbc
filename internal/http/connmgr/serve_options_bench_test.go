package connmgr

import (
	"testing"
	"time"
)

// BenchmarkServeStreamCommonOptions is the request path with every
// common_http_protocol_options limit set (none reached) and DROP_HEADER.
func BenchmarkServeStreamCommonOptions(b *testing.B) {
	benchServeStream(b, false, setCommonOptions)
}

// BenchmarkServeStreamCommonOptionsHTTP2 is the same on HTTP/2.
func BenchmarkServeStreamCommonOptionsHTTP2(b *testing.B) {
	benchServeStream(b, true, setCommonOptions)
}

// setCommonOptions sets every common_http_protocol_options limit, high
// enough never to be reached, and DROP_HEADER.
func setCommonOptions(c *Config) {
	c.MaxStreamDuration = time.Hour
	c.MaxRequestsPerConnection = 1 << 31
	c.HeadersWithUnderscores = DropUnderscores
}
