// Package main may import net/http.
package main

import nethttp "net/http"

var _ = nethttp.StatusOK
