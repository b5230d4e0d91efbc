package compression

import (
	"errors"
	"io"
	"iter"
)

// errReleased ends a decoder whose stream went away before its body ended.
var errReleased = errors.New("compression: decompressor released")

// ErrInflateRatio is returned when the output outgrows the input by more
// than the library's max_inflate_ratio (a decompression bomb).
var ErrInflateRatio = errors.New("compression: output exceeds max_inflate_ratio")

// pullDecompressor runs a pull-style decoder (gzip, brotli and zstd
// readers read their input) as a coroutine (iter.Pull): when the decoder
// needs input that has not arrived, its Read suspends it and Decompress
// returns what was decoded so far; the next Decompress resumes it with the
// next chunk. The runtime switches straight between the stream's
// goroutine and the coroutine (no channel hand-off, no scheduling), and the
// compressed body is never buffered.
type pullDecompressor struct {
	// open wraps the input in the library's reader; it runs on the
	// coroutine.
	open     func(src io.Reader) (io.Reader, error)
	maxRatio uint64 // 0: no limit

	in    []byte
	eof   bool
	out   []byte
	err   error
	done  bool
	yield func(struct{}) bool
	next  func() (struct{}, bool)
	stop  func()

	inTotal, outTotal uint64
}

func newPullDecompressor(open func(io.Reader) (io.Reader, error), maxRatio uint64) *pullDecompressor {
	d := &pullDecompressor{open: open, maxRatio: maxRatio}
	d.next, d.stop = iter.Pull(d.run)
	return d
}

func (d *pullDecompressor) run(yield func(struct{}) bool) {
	d.yield = yield
	zr, err := d.open(d)
	if err != nil {
		d.err = err
		return
	}
	if c, ok := zr.(interface{ Close() }); ok {
		// zstd's decoder holds buffers until closed.
		defer c.Close()
	}
	var buf [8 << 10]byte
	for {
		n, err := zr.Read(buf[:])
		d.out = append(d.out, buf[:n]...)
		d.outTotal += uint64(n)
		if d.maxRatio > 0 && d.outTotal > d.maxRatio*max(d.inTotal, 1) {
			d.err = ErrInflateRatio
			return
		}
		if err == io.EOF {
			return
		}
		if err != nil {
			d.err = err
			return
		}
	}
}

// Read is the decoder's input: the current chunk, then a suspension until
// the next one, io.EOF after the last.
func (d *pullDecompressor) Read(p []byte) (int, error) {
	for len(d.in) == 0 {
		if d.eof {
			return 0, io.EOF
		}
		if !d.yield(struct{}{}) {
			return 0, errReleased
		}
	}
	n := copy(p, d.in)
	d.in = d.in[n:]
	d.inTotal += uint64(n)
	return n, nil
}

// Decompress implements Decompressor. Input after the end of the
// compressed stream is ignored, as Envoy's decompressors do.
func (d *pullDecompressor) Decompress(dst, p []byte, finish bool) ([]byte, error) {
	if d.done {
		return dst, d.err
	}
	d.in, d.eof, d.out = p, finish, dst
	if _, ok := d.next(); !ok {
		d.done = true
	}
	out := d.out
	d.out, d.in = nil, nil
	return out, d.err
}

// Release implements Decompressor.
func (d *pullDecompressor) Release() { d.stop() }
