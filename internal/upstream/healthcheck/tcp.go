package healthcheck

import (
	"context"
	"fmt"
	"net"
)

// maxTCPReceive bounds what a TCP check buffers while looking for its
// receive blocks.
const maxTCPReceive = 64 << 10

// tcpProber is TcpHealthCheckerImpl: connect; with no receive blocks that
// is the whole check (and the connection is closed); otherwise write send
// and read until the blocks are found in order.
type tcpProber struct {
	cfg  *Config
	dial DialFunc
}

func (p *tcpProber) newSession(addr string) probeSession { return &tcpSession{p: p, addr: addr} }

func (p *tcpProber) close() {}

type tcpSession struct {
	p    *tcpProber
	addr string
	conn net.Conn // kept between checks with reuse_connection
	buf  []byte
}

func (s *tcpSession) check(ctx context.Context) Result {
	tc := s.p.cfg.TCP
	if s.conn == nil {
		c, err := s.p.dial(ctx, s.addr)
		if err != nil {
			return networkResult(err)
		}
		if len(tc.Receive) == 0 {
			// Envoy: "we are just testing that we can connect, so
			// immediately succeed", and close; send is not written.
			_ = c.Close()
			return Result{Outcome: Success}
		}
		s.conn = c
	}
	unbind := bindConn(ctx, s.conn)
	res := s.exchange(tc)
	if !unbind() || res.Outcome != Success || !s.p.cfg.ReuseConnection {
		s.close()
	}
	return res
}

func (s *tcpSession) exchange(tc *TCPConfig) Result {
	if len(tc.Send) > 0 {
		if _, err := s.conn.Write(tc.Send); err != nil {
			return networkResult(err)
		}
	}
	s.buf = s.buf[:0]
	var chunk [4096]byte
	for !matchInOrder(tc.Receive, s.buf) {
		if len(s.buf) > maxTCPReceive {
			return Result{Outcome: Failure, Detail: fmt.Sprintf("no match in %d bytes", len(s.buf))}
		}
		n, err := s.conn.Read(chunk[:])
		s.buf = append(s.buf, chunk[:n]...)
		if err != nil {
			if matchInOrder(tc.Receive, s.buf) {
				break
			}
			// Envoy: an unexpected close is a NETWORK failure.
			return networkResult(err)
		}
	}
	return Result{Outcome: Success}
}

func (s *tcpSession) close() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}
