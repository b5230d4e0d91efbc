//go:build !linux

package originaldst

import (
	"net/netip"
	"syscall"
)

// originalDst: SO_ORIGINAL_DST is Linux's; elsewhere the local address
// stays as it is.
func originalDst(syscall.RawConn, netip.AddrPort) (netip.AddrPort, bool) {
	return netip.AddrPort{}, false
}
