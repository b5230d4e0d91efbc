// Package listener must not import net/http sub-packages.
package listener

import (
	"net/http/httputil"
	"net/netip"
)

var (
	_ = httputil.DumpRequest
	_ netip.Addr
)
