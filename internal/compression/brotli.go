package compression

import (
	"github.com/andybalholm/brotli"
	brotlicv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/brotli/compressor/v3"
	brotlidv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/brotli/decompressor/v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Envoy's names of the brotli libraries.
const (
	BrotliCompressorName   = "envoy.compression.brotli.compressor"
	BrotliDecompressorName = "envoy.compression.brotli.decompressor"
)

func init() {
	registerCompressor(BrotliCompressorName, &brotlicv3.Brotli{}, buildBrotliCompressor)
	registerDecompressor(BrotliDecompressorName, &brotlidv3.Brotli{}, buildBrotliDecompressor)
}

// buildBrotliCompressor: quality (default 3) and window_bits (default 18)
// as Envoy; encoder_mode other than DEFAULT and
// disable_literal_context_modeling are not supported; input_block_bits and
// chunk_size size the encoder's buffers and are accepted.
func buildBrotliCompressor(cfg *brotlicv3.Brotli, path string) (*CompressorFactory, error) {
	quality, window := 3, 18
	if v := cfg.GetQuality(); v != nil {
		quality = int(v.GetValue())
	}
	if v := cfg.GetWindowBits(); v != nil {
		window = int(v.GetValue())
	}
	var errs configerr.List
	if m := cfg.GetEncoderMode(); m != brotlicv3.Brotli_DEFAULT {
		errs = append(errs, configerr.At(path+".encoder_mode", "encoder_mode %s is %s", m, configerr.NotSupported))
	}
	if cfg.GetDisableLiteralContextModeling() {
		errs = append(errs, configerr.At(path+".disable_literal_context_modeling", "disable_literal_context_modeling is %s", configerr.NotSupported))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	opts := brotli.WriterOptions{Quality: quality, LGWin: window}
	return newCompressorFactory("br", "brotli.", func() *brotli.Writer {
		return brotli.NewWriterOptions(nil, opts)
	}), nil
}

// buildBrotliDecompressor: disable_ring_buffer_reallocation and chunk_size
// size the decoder's buffers; they are accepted.
func buildBrotliDecompressor(cfg *brotlidv3.Brotli, path string) (*DecompressorFactory, error) {
	return &DecompressorFactory{
		Encoding:   "br",
		StatPrefix: "brotli.",
		ErrorStat:  "brotli_error",
		New:        newPullDecompressorFunc(func() resetReader { return brotli.NewReader(nil) }, 0),
	}, nil
}
