package compression

import (
	"bufio"
	"io"

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
	return newCompressorFactory("gzip", "gzip.", func() *gzip.Writer {
		w, _ := gzip.NewWriterLevel(nil, level) // level is valid: checked above
		return w
	}), nil
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
		New:        newPullDecompressorFunc(func() resetReader { return &gzipReader{br: bufio.NewReader(nil)} }, ratio),
	}, nil
}

// gzipReader is a gzip.Reader over a bufio.Reader that is reused with it:
// gzip.Reader.Reset wraps an input that is not an io.ByteReader in a new
// bufio.Reader on every call.
type gzipReader struct {
	z  gzip.Reader
	br *bufio.Reader
}

func (g *gzipReader) Read(p []byte) (int, error) { return g.z.Read(p) }

// Reset reads the next stream's gzip header from src; Reset(nil) drops the
// input.
func (g *gzipReader) Reset(src io.Reader) error {
	g.br.Reset(src)
	if src == nil {
		return nil
	}
	return g.z.Reset(g.br)
}
