package originaldst

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h): both 80.
const soOriginalDst = 80

// originalDst is Envoy's Utility::getOriginalDst on Linux: getsockopt
// SOL_IP/SO_ORIGINAL_DST for IPv4 sockets, SOL_IPV6/IP6T_SO_ORIGINAL_DST
// for IPv6 ones. The version is that of the socket's local address, as
// Envoy's Socket::ipVersion takes it once the socket is accepted: on a
// dual-stack listener an IPv4 client's (IPv4-mapped) local address is
// IPv4, so SOL_IP, where the IPv4 conntrack entry is. Only without a local
// address does the socket's domain (SO_DOMAIN) decide. IPv4-mapped results
// are unmapped.
func originalDst(rc syscall.RawConn, local netip.AddrPort) (netip.AddrPort, bool) {
	var dst netip.AddrPort
	var ok bool
	_ = rc.Control(func(fd uintptr) {
		v4 := local.Addr().Unmap().Is4()
		if !local.IsValid() {
			family, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
			if err != nil || (family != unix.AF_INET && family != unix.AF_INET6) {
				return
			}
			v4 = family == unix.AF_INET
		}
		if v4 {
			var sa unix.RawSockaddrInet4
			if getsockopt(int(fd), unix.SOL_IP, unsafe.Pointer(&sa), unix.SizeofSockaddrInet4) != nil {
				return
			}
			dst = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port(sa.Port))
			ok = true
			return
		}
		var sa unix.RawSockaddrInet6
		if getsockopt(int(fd), unix.SOL_IPV6, unsafe.Pointer(&sa), unix.SizeofSockaddrInet6) != nil {
			return
		}
		dst = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port(sa.Port))
		ok = true
	})
	return dst, ok
}

// port converts a sockaddr port (network byte order in memory) to a value.
func port(p uint16) uint16 {
	var b [2]byte
	*(*uint16)(unsafe.Pointer(&b[0])) = p
	return binary.BigEndian.Uint16(b[:])
}

func getsockopt(fd, level int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), soOriginalDst, uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return e
	}
	return nil
}
