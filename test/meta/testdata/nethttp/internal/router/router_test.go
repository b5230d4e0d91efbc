package router

// Test files may import net/http.
import "net/http/httptest"

var _ = httptest.NewRecorder
