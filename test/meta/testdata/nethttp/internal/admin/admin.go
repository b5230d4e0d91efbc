// Package admin may import net/http.
package admin

import nethttp "net/http"

var _ = nethttp.StatusOK
