// Package stats imports net/http only by name prefix.
package stats

import "net/netip"

var _ netip.Addr
