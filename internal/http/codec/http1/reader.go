package http1

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/herald-proxy/herald/internal/network/sockio"
)

const (
	// initialBufSize is the read buffer a connection starts with; it grows
	// (up to the header limit plus slack) only for unusually large headers.
	initialBufSize = 4096
	// maxChunkLineBytes bounds a chunk-size line including extensions.
	maxChunkLineBytes = 4096
)

var bufPool = sync.Pool{New: func() any { b := make([]byte, initialBufSize); return &b }}

// errBufferFull means a line or header section did not fit the buffer limit.
var errBufferFull = errors.New("http1: buffer full")

// connReader is a growable read buffer over a net.Conn. Unlike bufio.Reader
// it exposes its contents so a whole header section can be parsed in place.
// Owned by the goroutine reading the connection.
type connReader struct {
	c  net.Conn
	pr sockio.PooledReader // c, when it can wait without a buffer
	// server is the server connection reading through this reader (nil
	// on the client side); when a pooled read finds nothing it may release
	// its writer too.
	server *serverConn
	buf    []byte
	pbuf   *[]byte // pooled buffer to give back, nil once grown
	r, w   int     // unread bytes are buf[r:w]
	err    error   // sticky read error
}

func (rd *connReader) init(c net.Conn) {
	rd.c = c
	rd.pr, _ = c.(sockio.PooledReader)
	rd.pbuf = bufPool.Get().(*[]byte)
	rd.buf = *rd.pbuf
}

// ReadBuffer implements sockio.BufferSource: the free part of the buffer,
// taking a pooled one if the reader gave its buffer back.
func (rd *connReader) ReadBuffer() []byte {
	if rd.buf == nil {
		rd.pbuf = bufPool.Get().(*[]byte)
		rd.buf = *rd.pbuf
	}
	return rd.buf[rd.w:]
}

// ReleaseReadBuffer implements sockio.BufferSource: an empty pooled buffer
// goes back to the pool while the connection waits.
func (rd *connReader) ReleaseReadBuffer() {
	if rd.r != rd.w {
		return // holds unread bytes
	}
	rd.r, rd.w = 0, 0
	rd.release() // a grown buffer is dropped; the next read takes a pooled one
	if rd.server != nil {
		rd.server.releaseWriter()
	}
}

func (rd *connReader) release() {
	if rd.pbuf != nil {
		bufPool.Put(rd.pbuf)
	}
	rd.pbuf, rd.buf = nil, nil
}

func (rd *connReader) buffered() int { return rd.w - rd.r }

// fill reads more bytes, compacting the buffer or growing it up to max
// bytes. It returns errBufferFull when the unread bytes already fill max.
func (rd *connReader) fill(max int) error {
	if rd.err != nil {
		return rd.err
	}
	if rd.buf == nil && rd.pr == nil {
		rd.ReadBuffer()
	}
	if rd.buf != nil && rd.w == len(rd.buf) {
		if rd.r > 0 {
			copy(rd.buf, rd.buf[rd.r:rd.w])
			rd.w -= rd.r
			rd.r = 0
		} else {
			if len(rd.buf) >= max {
				return errBufferFull
			}
			n := 2 * len(rd.buf)
			if n > max {
				n = max
			}
			nb := make([]byte, n)
			copy(nb, rd.buf[:rd.w])
			rd.release()
			rd.buf = nb
		}
	}
	var n int
	var err error
	if rd.pr != nil && rd.r == rd.w {
		// Nothing buffered: wait without holding the buffer.
		rd.r, rd.w = 0, 0
		n, err = rd.pr.ReadPooled(rd)
	} else {
		n, err = rd.c.Read(rd.buf[rd.w:])
	}
	rd.w += n
	if err != nil {
		rd.err = err
		if n > 0 {
			return nil
		}
		return err
	}
	return nil
}

// readSection finds a header section (lines up to an empty line) starting
// at rd.r, reading more as needed. It returns the offset of the section end
// relative to rd.r (just past the empty line) and the length of the field
// lines (excluding the empty line). limit bounds the section size;
// exceeding it returns errBufferFull.
func (rd *connReader) readSection(limit int) (fieldsEnd, end int, err error) {
	scan := 0 // offset (relative to rd.r) of the next line to examine
	for {
		b := rd.buf[rd.r:rd.w]
		for scan < len(b) {
			i := bytes.IndexByte(b[scan:], '\n')
			if i < 0 {
				break
			}
			if i == 0 || (i == 1 && b[scan] == '\r') {
				if scan+i+1 > limit {
					return 0, 0, errBufferFull
				}
				return scan, scan + i + 1, nil
			}
			scan += i + 1
		}
		if len(b) >= limit {
			return 0, 0, errBufferFull
		}
		if err := rd.fill(limit + initialBufSize); err != nil {
			if err == io.EOF && rd.buffered() > 0 {
				return 0, 0, io.ErrUnexpectedEOF
			}
			return 0, 0, err
		}
	}
}

// readLine returns the next line (without its terminating LF; the CR is
// kept for the caller to check) and consumes it.
func (rd *connReader) readLine(limit int) ([]byte, error) {
	scan := 0
	for {
		b := rd.buf[rd.r:rd.w]
		if i := bytes.IndexByte(b[scan:], '\n'); i >= 0 {
			line := b[:scan+i]
			rd.r += scan + i + 1
			return line, nil
		}
		scan = len(b)
		if len(b) >= limit {
			return nil, errBufferFull
		}
		if err := rd.fill(limit + initialBufSize); err != nil {
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}
