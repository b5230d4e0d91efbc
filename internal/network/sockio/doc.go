// Package sockio reads and writes TCP sockets with raw, non-blocking system
// calls through the runtime's poller (syscall.RawConn), for the request path.
//
// Why not net.TCPConn.Read/Write: each of those enters the scheduler's
// syscall state (entersyscall/exitsyscall). On a busy proxy a socket call
// often takes longer than sysmon's 20 µs tick in a VM, so sysmon retakes the
// P and hands it to another thread, and the goroutine's thread must win it
// back: context switches and futex wake-ups that cost more than the
// read itself (measured: ≈0.26 context switches and 10% of CPU in sysmon per
// proxied HTTP/1.1 request; see BENCHMARKS.md). A read or write on a
// non-blocking socket never blocks, so it is safe to issue it without
// telling the scheduler — the same reasoning the runtime applies to its own
// non-blocking poller calls. Waiting for readiness still goes through the
// poller (RawConn.Read/Write park the goroutine on EAGAIN), so deadlines,
// Close and the netpoller behave exactly as for a net.TCPConn.
//
// Only the data path goes through here; dialing, accepting, deadlines and
// closing stay with package net. It must not import anything of herald's.
package sockio
