package outlier

import (
	"io"
	"log/slog"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil/leakcheck"
)

// TestMain fails the run when an interval goroutine outlives the tests:
// every started Detector must be stopped.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	leakcheck.Main(m, leakcheck.Goroutines{
		Watch: []string{"internal/upstream/outlier.(*Detector).run"},
	})
}
