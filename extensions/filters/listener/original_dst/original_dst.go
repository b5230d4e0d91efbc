package originaldst

import (
	"net/netip"
	"syscall"

	originaldstv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/original_dst/v3"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/network"
	"github.com/herald-proxy/herald/internal/network/listenerfilter"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.listener.original_dst"

func init() {
	listenerfilter.Register(listenerfilter.Extension[*originaldstv3.OriginalDst]{
		Name:   Name,
		Config: &originaldstv3.OriginalDst{},
		Build:  build,
	})
}

// Filter is the built original_dst filter. Immutable.
type Filter struct {
	// originalDst reads a socket's original destination; tests replace it.
	originalDst func(rc syscall.RawConn, local netip.AddrPort) (netip.AddrPort, bool)
}

var _ listenerfilter.Filter = (*Filter)(nil)

func build(cfg *originaldstv3.OriginalDst, ctx listenerfilter.BuildContext) (listenerfilter.Filter, error) {
	if err := configerr.RejectUnlisted(cfg, ctx.Path, nil).Err(); err != nil {
		return nil, err
	}
	return &Filter{originalDst: originalDst}, nil
}

// MaxReadBytes implements listenerfilter.Filter: the filter reads no bytes.
func (f *Filter) MaxReadBytes() int { return 0 }

// syscallConn is what a TCP socket exposes (*net.TCPConn).
type syscallConn interface {
	SyscallConn() (syscall.RawConn, error)
}

// OnData implements listenerfilter.Filter: Envoy's
// OriginalDstFilter::onAccept. For an IP socket it asks the kernel for the
// original destination and, when there is one, restores it as the local
// address. Without NAT the kernel reports the address the client connected
// to, which is already the local address; when it cannot tell (no
// conntrack entry, not Linux) the local address is left as it is, as in
// Envoy. It never closes the connection.
func (f *Filter) OnData(c *network.Conn, _ []byte) listenerfilter.Status {
	sc, ok := c.Conn.(syscallConn)
	if !ok {
		return listenerfilter.Continue
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return listenerfilter.Continue
	}
	if dst, ok := f.originalDst(rc, c.Local); ok {
		c.Local = dst
	}
	return listenerfilter.Continue
}
