package compression

import (
	"io"
	"sync"

	gzipcv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/gzip/compressor/v3"
	gzipdv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/gzip/decompressor/v3"
	"github.com/klauspost/compress/gzip"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Envoy's names of the gzip libraries.
const (
	GzipCompressorName   = "envoy.compression.gzip.compressor"
	GzipDecompressorName = "envoy.compression.gzip.decompressor"
)

func init() {
	registerCompressor(GzipCompressorName, &gzipcv3.Gzip{}, buildGzipCompressor)
	registerDecompressor(GzipDecompressorName, &gzipdv3.Gzip{}, buildGzipDecompressor)
}

// buildGzipCompressor: compression_level maps to Go's deflate levels 1..9
// (DEFAULT_COMPRESSION is zlib's 6); HUFFMAN_ONLY is supported, the other
// zlib strategies are not. memory_level, window_bits and chunk_size tune
// zlib's memory and output buffer: Go's deflate has a fixed 32 KiB window,
// so they are accepted and change nothing (the output is standard gzip
// either way).
func buildGzipCompressor(cfg *gzipcv3.Gzip, path string) (*CompressorFactory, error) {
	level := int(cfg.GetCompressionLevel())
	if level == 0 {
		// Envoy: DEFAULT_COMPRESSION "gives the same result as COMPRESSION_LEVEL_6".
		level = 6
	}
	switch cfg.GetCompressionStrategy() {
	case gzipcv3.Gzip_DEFAULT_STRATEGY:
	case gzipcv3.Gzip_HUFFMAN_ONLY:
		level = gzip.HuffmanOnly
	default:
		return nil, configerr.At(path+".compression_strategy", "compression_strategy %s is %s", cfg.GetCompressionStrategy(), configerr.NotSupported)
	}
	pool := &sync.Pool{New: func() any {
		w, _ := gzip.NewWriterLevel(nil, level)
		return &gzipCompressor{w: w}
	}}
	return &CompressorFactory{
		Encoding:   "gzip",
		StatPrefix: "gzip.",
		New: func() Compressor {
			c := pool.Get().(*gzipCompressor)
			c.pool = pool
			c.w.Reset(&c.sink)
			return c
		},
	}, nil
}

type gzipCompressor struct {
	w    *gzip.Writer
	sink appendWriter
	pool *sync.Pool
}

// Compress implements Compressor.
func (c *gzipCompressor) Compress(dst, p []byte, finish bool) ([]byte, error) {
	c.sink.b = dst
	var err error
	if len(p) > 0 {
		_, err = c.w.Write(p)
	}
	if err == nil {
		if finish {
			err = c.w.Close()
		} else {
			err = c.w.Flush()
		}
	}
	out := c.sink.b
	c.sink.b = nil
	return out, err
}

// Release implements Compressor.
func (c *gzipCompressor) Release() {
	c.sink.b = nil
	c.w.Reset(io.Discard)
	c.pool.Put(c)
}

// defaultMaxInflateRatio: Envoy's gzip decompressor max_inflate_ratio
// default ("If not set, defaults to 100").
const defaultMaxInflateRatio = 100

// buildGzipDecompressor: window_bits and chunk_size size zlib's buffers;
// Go's inflater accepts any window, so they are accepted and change
// nothing. max_inflate_ratio bounds the output.
func buildGzipDecompressor(cfg *gzipdv3.Gzip, path string) (*DecompressorFactory, error) {
	ratio := uint64(defaultMaxInflateRatio)
	if v := cfg.GetMaxInflateRatio(); v != nil {
		ratio = uint64(v.GetValue())
	}
	return &DecompressorFactory{
		Encoding:   "gzip",
		StatPrefix: "gzip.",
		ErrorStat:  "zlib_data_error",
		New: func() Decompressor {
			return newPullDecompressor(func(src io.Reader) (io.Reader, error) {
				return gzip.NewReader(src)
			}, ratio)
		},
	}, nil
}
