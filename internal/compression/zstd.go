package compression

import (
	zstdcv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/zstd/compressor/v3"
	zstddv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/zstd/decompressor/v3"
	"github.com/klauspost/compress/zstd"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Envoy's names of the zstd libraries.
const (
	ZstdCompressorName   = "envoy.compression.zstd.compressor"
	ZstdDecompressorName = "envoy.compression.zstd.decompressor"
)

// zstdMaxWindow bounds the window a zstd body may ask the decoder for
// (RFC 8878 recommends decoders support at least 8 MiB).
const zstdMaxWindow = 8 << 20

func init() {
	registerCompressor(ZstdCompressorName, &zstdcv3.Zstd{}, buildZstdCompressor)
	registerDecompressor(ZstdDecompressorName, &zstddv3.Zstd{}, buildZstdDecompressor)
}

// buildZstdCompressor: compression_level (0 means zstd's default 3) maps to
// the closest level of klauspost/compress; enable_checksum is supported;
// strategy other than DEFAULT and dictionary are not; chunk_size is
// accepted.
func buildZstdCompressor(cfg *zstdcv3.Zstd, path string) (*CompressorFactory, error) {
	level := 3
	if v := cfg.GetCompressionLevel(); v != nil && v.GetValue() > 0 {
		level = int(v.GetValue())
	}
	var errs configerr.List
	if s := cfg.GetStrategy(); s != zstdcv3.Zstd_DEFAULT {
		errs = append(errs, configerr.At(path+".strategy", "strategy %s is %s", s, configerr.NotSupported))
	}
	if cfg.GetDictionary() != nil {
		errs = append(errs, configerr.At(path+".dictionary", "dictionary is %s", configerr.NotSupported))
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	opts := []zstd.EOption{
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderLevel(zstd.EncoderLevelFromZstd(level)),
		zstd.WithEncoderCRC(cfg.GetEnableChecksum()),
		zstd.WithWindowSize(zstdMaxWindow),
	}
	return newCompressorFactory("zstd", "zstd.", func() *zstd.Encoder {
		w, _ := zstd.NewWriter(nil, opts...) // opts are valid: fixed above
		return w
	}), nil
}

// buildZstdDecompressor: dictionaries are not supported; chunk_size is
// accepted.
func buildZstdDecompressor(cfg *zstddv3.Zstd, path string) (*DecompressorFactory, error) {
	if len(cfg.GetDictionaries()) > 0 {
		return nil, configerr.At(path+".dictionaries", "dictionaries is %s", configerr.NotSupported)
	}
	return &DecompressorFactory{
		Encoding:   "zstd",
		StatPrefix: "zstd.",
		ErrorStat:  "zstd_generic_error",
		New: newPullDecompressorFunc(func() resetReader {
			// Goroutine-free: concurrency 1 decodes on the caller (the
			// coroutine), which the suspension needs.
			d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderLowmem(true))
			return d
		}, 0),
	}, nil
}
