// Package testdata is ignored, as the go tool ignores it.
package testdata

import "net/http"

var _ = http.StatusOK
