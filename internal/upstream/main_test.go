package upstream

import (
	"io"
	"log/slog"
	"testing"

	"github.com/herald-proxy/herald/internal/testutil/leakcheck"
)

// TestMain fails the run when health checker or outlier detector
// goroutines outlive the tests: a closed Manager or replaced cluster must
// stop its Runner and Detector.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	leakcheck.Main(m, leakcheck.Goroutines{
		Watch: []string{"internal/upstream/healthcheck.", "internal/upstream/outlier."},
	})
}
