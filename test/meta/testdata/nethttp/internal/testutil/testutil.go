// Package testutil may import net/http.
package testutil

import nethttp "net/http"

var _ = nethttp.StatusOK
