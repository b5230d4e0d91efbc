package http2

import (
	"testing"

	"github.com/herald-proxy/herald/internal/testutil/leakcheck"
)

// TestMain fails the run when goroutines of this package or of x/net's
// HTTP/2 code outlive the tests (grpc-go leakcheck idea).
func TestMain(m *testing.M) {
	leakcheck.Main(m, leakcheck.Goroutines{
		Watch: []string{"golang.org/x/net/http2.", "internal/http/codec/http2."},
	})
}
