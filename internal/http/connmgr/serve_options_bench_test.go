package connmgr

import (
	"testing"
	"time"
)

// BenchmarkServeStreamCommonOptions is the request path with every
// common_http_protocol_options limit set (none reached) and DROP_HEADER.
func BenchmarkServeStreamCommonOptions(b *testing.B) {
	benchServeStream(b, func(c *Config) {
		c.MaxStreamDuration = time.Hour
		c.MaxRequestsPerConnection = 1 << 31
		c.HeadersWithUnderscores = DropUnderscores
	})
}
