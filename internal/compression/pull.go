package compression

import (
	"errors"
	"io"
	"iter"
	"sync"
)

// errReleased ends a decoder whose stream went away before its body ended.
var errReleased = errors.New("compression: decompressor released")

// ErrInflateRatio is returned when the output outgrows the input by more
// than the library's max_inflate_ratio (a decompression bomb).
var ErrInflateRatio = errors.New("compression: output exceeds max_inflate_ratio")

// resetReader is what each library's streaming reader offers (brotli.Reader,
// zstd.Decoder, gzipReader): Reset points it at the next stream's input
// without reallocating its state; Reset(nil) drops the input.
type resetReader interface {
	io.Reader
	Reset(src io.Reader) error
}

// pooledReader is a library reader and the buffer it decodes into, kept
// across streams: a decoder's state (a 32 KiB window for gzip, the ring
// buffer for brotli, the zstd block decoder) is the bulk of a
// decompressor's allocations. None runs a goroutine (zstd decodes with
// concurrency 1), so one the pool drops needs no Close.
type pooledReader struct {
	r   resetReader
	buf [8 << 10]byte
}

// newPullDecompressorFunc is the shared plumbing of the decompressor
// libraries: a DecompressorFactory.New whose decompressors decode with
// readers made by newReader, reused through a pool.
func newPullDecompressorFunc(newReader func() resetReader, maxRatio uint64) func() Decompressor {
	readers := &sync.Pool{New: func() any { return &pooledReader{r: newReader()} }}
	return func() Decompressor {
		d := &pullDecompressor{readers: readers, maxRatio: maxRatio}
		// The coroutine is per stream: a suspended one cannot wait in a
		// sync.Pool (one the pool drops would never end), and the
		// alternatives — a goroutine fed by channels, or buffering the
		// whole compressed body — cost more or stop streaming.
		d.next, d.stop = iter.Pull(d.run)
		return d
	}
}

// pullDecompressor runs a pull-style decoder (gzip, brotli and zstd
// readers read their input) as a coroutine (iter.Pull): when the decoder
// needs input that has not arrived, its Read suspends it and Decompress
// returns what was decoded so far; the next Decompress resumes it with the
// next chunk. The runtime switches straight between the stream's
// goroutine and the coroutine (no channel hand-off, no scheduling), and the
// compressed body is never buffered.
type pullDecompressor struct {
	readers  *sync.Pool // of *pooledReader
	maxRatio uint64     // 0: no limit

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

func (d *pullDecompressor) run(yield func(struct{}) bool) {
	d.yield = yield
	pr := d.readers.Get().(*pooledReader)
	defer func() {
		// The coroutine has ended: nothing reads through pr any more.
		pr.r.Reset(nil)
		d.readers.Put(pr)
	}()
	zr := pr.r
	if err := zr.Reset(d); err != nil {
		d.err = err
		return
	}
	for {
		// The decoder reads into pr.buf, not into d.out: a Read suspended
		// for input resumes into the slice it was given, and d.out is the
		// caller's buffer of the previous call by then.
		n, err := zr.Read(pr.buf[:])
		d.out = append(d.out, pr.buf[:n]...)
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
