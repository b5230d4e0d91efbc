package healthcheck

import (
	"io"
	"log/slog"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil/leakcheck"
)

// TestMain fails the run when checker goroutines (or the HTTP/2 client's)
// outlive the tests: every Runner must be stopped (grpc-go leakcheck idea).
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	leakcheck.Main(m, leakcheck.Goroutines{
		Watch:  []string{"internal/upstream/healthcheck.", "golang.org/x/net/http2.(*ClientConn)"},
		Ignore: []string{"net/http.(*Server)", "net/http/httptest"},
	})
}
