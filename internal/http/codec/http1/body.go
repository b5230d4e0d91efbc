package http1

import (
	"errors"
	"fmt"
	"io"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

type bodyMode uint8

const (
	bodyNone    bodyMode = iota // no body: ReadBody returns io.EOF
	bodyLength                  // Content-Length framed
	bodyChunked                 // chunked transfer-coding
	bodyClose                   // delimited by connection close (responses only)
)

type chunkState uint8

const (
	chunkSize    chunkState = iota // expecting a chunk-size line
	chunkData                      // inside chunk data, remain bytes left
	chunkDataEnd                   // expecting the CRLF after chunk data
)

// errWouldBlock is returned by bodyReader.read with block=false when more
// bytes are needed from the connection.
var errWouldBlock = errors.New("http1: would block")

// directReadMin is the smallest read that bypasses the buffer and reads from
// the connection straight into the caller's slice.
const directReadMin = 2048

// bodyReader decodes one message body from a connReader. Owned by the
// goroutine reading the connection.
type bodyReader struct {
	rd     *connReader
	mode   bodyMode
	remain int64 // bodyLength: bytes left; bodyChunked: bytes left in chunk
	cstate chunkState
	done   bool
	err    error // sticky decode error

	// Trailers of a chunked body, parsed after the last chunk.
	trailers    hhttp.Headers
	hasTrailers bool
	spans       []fieldSpan
	maxHeader   int // limit for the trailer section
	maxCount    int

	// server selects the error type for a malformed body: a *CodecError on
	// the server side, an error wrapping ErrProtocol on the client side.
	server bool
}

func (br *bodyReader) reset(mode bodyMode, n int64) {
	br.mode, br.remain, br.cstate = mode, n, chunkSize
	br.done = mode == bodyNone || (mode == bodyLength && n == 0)
	br.err = nil
	br.trailers.Reset()
	br.hasTrailers = false
}

// read fills p with body bytes. It returns io.EOF, possibly together with
// the last bytes, once the body is complete. With block=false it never reads
// from the connection and returns errWouldBlock instead.
func (br *bodyReader) read(p []byte, block bool) (int, error) {
	if br.err != nil {
		return 0, br.err
	}
	if br.done {
		return 0, io.EOF
	}
	n := 0
	var err error
	switch br.mode {
	case bodyLength:
		n, err = br.readData(p, br.remain, block)
		br.remain -= int64(n)
		if br.remain == 0 {
			br.done = true
			return n, io.EOF
		}
	case bodyClose:
		n, err = br.readData(p, int64(len(p)), block)
		if err == io.EOF {
			br.done = true
			return n, io.EOF
		}
	case bodyChunked:
		n, err = br.readChunked(p, block)
	}
	if err != nil && err != errWouldBlock && err != io.EOF {
		if err == io.ErrUnexpectedEOF || br.mode != bodyClose {
			br.err = err
		}
	}
	return n, err
}

// readData copies up to max bytes (and len(p)) of raw data.
func (br *bodyReader) readData(p []byte, max int64, block bool) (int, error) {
	if int64(len(p)) > max {
		p = p[:max]
	}
	if len(p) == 0 {
		return 0, nil
	}
	rd := br.rd
	if rd.buffered() == 0 {
		if !block {
			return 0, errWouldBlock
		}
		if rd.err != nil {
			return 0, br.eofErr(rd.err)
		}
		if len(p) >= directReadMin {
			n, err := rd.c.Read(p)
			if err != nil {
				rd.err = err
				if n > 0 {
					return n, nil
				}
				return 0, br.eofErr(err)
			}
			return n, nil
		}
		if err := rd.fill(len(rd.buf)); err != nil {
			return 0, br.eofErr(err)
		}
	}
	n := copy(p, rd.buf[rd.r:rd.w])
	rd.r += n
	return n, nil
}

// eofErr maps a connection error while reading a body: EOF ends a
// close-delimited body and truncates any other.
func (br *bodyReader) eofErr(err error) error {
	if err == io.EOF && br.mode != bodyClose {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (br *bodyReader) readChunked(p []byte, block bool) (int, error) {
	n := 0
	for {
		switch br.cstate {
		case chunkSize:
			if !block && !br.hasLine() {
				return n, errWouldBlock
			}
			if n > 0 && !br.hasLine() {
				return n, nil
			}
			line, err := br.rd.readLine(maxChunkLineBytes)
			if err != nil {
				if err == errBufferFull {
					return n, br.fail("chunk-size line too long")
				}
				return n, err
			}
			if len(line) == 0 || line[len(line)-1] != '\r' {
				// Bare LF in chunked framing: rejected, a classic
				// smuggling vector.
				return n, br.fail("chunk-size line not terminated by CRLF")
			}
			size, ok := parseChunkSize(line[:len(line)-1])
			if !ok {
				return n, br.fail("invalid chunk size")
			}
			if size == 0 {
				if err := br.readTrailers(block); err != nil {
					return n, err
				}
				br.done = true
				return n, io.EOF
			}
			br.remain, br.cstate = size, chunkData
		case chunkData:
			if n == len(p) {
				return n, nil
			}
			if n > 0 && br.rd.buffered() == 0 {
				return n, nil
			}
			m, err := br.readData(p[n:], br.remain, block)
			n += m
			br.remain -= int64(m)
			if err != nil {
				return n, err
			}
			if br.remain == 0 {
				br.cstate = chunkDataEnd
			}
		case chunkDataEnd:
			rd := br.rd
			for rd.buffered() < 2 {
				if !block {
					return n, errWouldBlock
				}
				if n > 0 {
					return n, nil
				}
				if err := rd.fill(len(rd.buf)); err != nil {
					return n, br.eofErr(err)
				}
			}
			if rd.buf[rd.r] != '\r' || rd.buf[rd.r+1] != '\n' {
				return n, br.fail("chunk data not terminated by CRLF")
			}
			rd.r += 2
			br.cstate = chunkSize
		}
	}
}

func (br *bodyReader) hasLine() bool {
	rd := br.rd
	for i := rd.r; i < rd.w; i++ {
		if rd.buf[i] == '\n' {
			return true
		}
	}
	return false
}

// readTrailers parses the trailer section after the last chunk.
func (br *bodyReader) readTrailers(block bool) error {
	rd := br.rd
	if !block {
		// Only complete sections already buffered are accepted.
		if !sectionBuffered(rd.buf[rd.r:rd.w]) {
			return errWouldBlock
		}
	}
	fieldsEnd, end, err := rd.readSection(br.maxHeader)
	if err != nil {
		if err == errBufferFull {
			return br.failWith(codecErr(431, DetailsHeadersTooLarge, "trailers too large"))
		}
		return err
	}
	if fieldsEnd == 0 {
		rd.r += end
		return nil
	}
	b := rd.buf[rd.r : rd.r+end]
	var cerr *hhttp.CodecError
	br.spans, cerr = parseFields(b, 0, fieldsEnd, br.spans[:0], br.maxCount)
	if cerr != nil {
		return br.failWith(cerr)
	}
	s := string(b[:fieldsEnd])
	for _, f := range br.spans {
		br.trailers.Fields = append(br.trailers.Fields, hhttp.HeaderField{Name: s[f.ns:f.ne], Value: s[f.vs:f.ve]})
	}
	br.hasTrailers = true
	rd.r += end
	return nil
}

func sectionBuffered(b []byte) bool {
	start := 0
	for i := 0; i < len(b); i++ {
		if b[i] == '\n' {
			line := b[start:i]
			if len(line) == 0 || (len(line) == 1 && line[0] == '\r') {
				return true
			}
			start = i + 1
		}
	}
	return false
}

func (br *bodyReader) fail(msg string) error {
	return br.failWith(badRequest(msg))
}

func (br *bodyReader) failWith(e *hhttp.CodecError) error {
	if br.server {
		br.err = e
	} else {
		br.err = fmt.Errorf("%w: %v", ErrProtocol, e.Err)
	}
	return br.err
}
