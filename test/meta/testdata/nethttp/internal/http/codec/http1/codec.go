// Package http1 may import net/http.
package http1

import nethttp "net/http"

var _ = nethttp.StatusOK
