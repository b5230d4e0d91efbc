package secret

import (
	"io"
	"log/slog"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil/leakcheck"
)

// TestMain fails the run when a manager's file watcher or an SDS file
// subscription outlives the tests: every Manager must be closed.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	leakcheck.Main(m, leakcheck.Goroutines{
		Watch: []string{"internal/secret.(*Manager).watchFiles", "internal/xds.(*fileSource).run"},
	})
}
