// Package router must not import net/http.
package router

import (
	"net/http"
)

var _ = http.StatusOK
