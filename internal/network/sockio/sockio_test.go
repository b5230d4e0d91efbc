package sockio

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// pair returns a wrapped server-side connection and the client side.
func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		t.Fatal("accept failed")
	}
	w, ok := Wrap(srv).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) did not wrap", srv)
	}
	t.Cleanup(func() { w.Close(); client.Close() })
	return w, client
}

func TestWrapNonTCP(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(pipe) = %T, want the pipe unchanged", got)
	}
}

func TestReadWrite(t *testing.T) {
	tests := []struct {
		name string
		size int
	}{
		{name: "small", size: 13},
		// Larger than the socket buffers: Write must park on EAGAIN and
		// resume as the reader drains.
		{name: "8 MiB", size: 8 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, peer := pair(t)
			want := bytes.Repeat([]byte("0123456789abcdef"), tt.size/16+1)[:tt.size]

			// herald writes, the peer reads.
			got := make(chan []byte, 1)
			go func() { b, _ := io.ReadAll(io.LimitReader(peer, int64(tt.size))); got <- b }()
			n, err := c.Write(want)
			if err != nil || n != tt.size {
				t.Fatalf("Write = %d, %v; want %d, nil", n, err, tt.size)
			}
			if b := <-got; !bytes.Equal(b, want) {
				t.Fatalf("peer read %d bytes, differing from what was written", len(b))
			}

			// The peer writes, herald reads.
			go func() { peer.Write(want) }()
			buf := make([]byte, tt.size)
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatalf("ReadFull: %v", err)
			}
			if !bytes.Equal(buf, want) {
				t.Fatal("read bytes differ from what the peer wrote")
			}
		})
	}
}

func TestReadEOFAndEmpty(t *testing.T) {
	c, peer := pair(t)
	if n, err := c.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil) = %d, %v; want 0, nil", n, err)
	}
	if n, err := c.Write(nil); n != 0 || err != nil {
		t.Fatalf("Write(nil) = %d, %v; want 0, nil", n, err)
	}
	peer.Write([]byte("last"))
	peer.Close()
	b, err := io.ReadAll(c)
	if err != nil || string(b) != "last" {
		t.Fatalf("ReadAll = %q, %v; want \"last\", nil", b, err)
	}
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("Read after EOF = %v, want io.EOF", err)
	}
}

func TestReadDeadline(t *testing.T) {
	c, _ := pair(t)
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := c.Read(make([]byte, 10))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read past deadline = %v, want os.ErrDeadlineExceeded", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past deadline = %v, want a net.Error with Timeout()", err)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	c, _ := pair(t)
	done := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 10)); done <- err }()
	// Close may run before or after Read parks; either way Read returns
	// net.ErrClosed.
	c.Close()
	if err := <-done; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close = %v, want net.ErrClosed", err)
	}
}

func TestWriteAfterPeerReset(t *testing.T) {
	c, peer := pair(t)
	peer.(*net.TCPConn).SetLinger(0)
	peer.Close()
	// The first writes may succeed into the socket buffer; once the RST is
	// in, a write fails with ECONNRESET or EPIPE.
	var err error
	for i := 0; i < 1000 && err == nil; i++ {
		_, err = c.Write(make([]byte, 1024))
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("Write to a reset peer = %v, want a *net.OpError for write", err)
	}
}

func BenchmarkReadWrite(b *testing.B) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c := Wrap(nc)
	defer c.Close()
	msg, buf := make([]byte, 64), make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		c.Write(msg)
		io.ReadFull(c, buf)
	}
}
