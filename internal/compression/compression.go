package compression

import (
	"io"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/registry"
)

// Compressor compresses one stream's body, chunk by chunk. Not safe for
// concurrent use.
type Compressor interface {
	// Compress appends to dst the compressed form of p and returns it.
	// Without finish the output is flushed, so the receiver can decode
	// every byte given so far (Envoy's Compressor::State::Flush); finish
	// ends the compressed stream (State::Finish).
	Compress(dst, p []byte, finish bool) ([]byte, error)
	// Release returns the compressor's resources; it is unusable after.
	Release()
}

// Decompressor decompresses one stream's body, chunk by chunk. Not safe
// for concurrent use.
type Decompressor interface {
	// Decompress appends to dst what p decompresses to, as far as it can
	// be decoded yet, and returns it; finish says p is the last input.
	Decompress(dst, p []byte, finish bool) ([]byte, error)
	// Release returns the decompressor's resources; it is unusable after.
	Release()
}

// CompressorFactory is a built compressor library. Immutable.
type CompressorFactory struct {
	// Encoding is the content-encoding it produces: "gzip", "br", "zstd".
	Encoding string
	// StatPrefix is the library's stat prefix in the filter's stats:
	// "gzip.", "brotli.", "zstd.".
	StatPrefix string
	// New returns a compressor for one stream.
	New func() Compressor
}

// DecompressorFactory is a built decompressor library. Immutable.
type DecompressorFactory struct {
	// Encoding is the content-encoding it decodes.
	Encoding string
	// StatPrefix is the library's stat prefix: "gzip.", "brotli.", "zstd.".
	StatPrefix string
	// New returns a decompressor for one stream.
	New func() Decompressor
	// ErrorStat names the library counter a decoding error increments
	// (Envoy's zlib_data_error, brotli_error, zstd_generic_error).
	ErrorStat string
}

// CompressorLibrary is one registered compressor library.
type CompressorLibrary struct {
	NewConfig func() proto.Message
	// Build interprets cfg (at path, for errors) once per snapshot.
	Build func(cfg proto.Message, path string) (*CompressorFactory, error)
}

// DecompressorLibrary is one registered decompressor library.
type DecompressorLibrary struct {
	NewConfig func() proto.Message
	Build     func(cfg proto.Message, path string) (*DecompressorFactory, error)
}

// Compressors and Decompressors hold the libraries by type URL and name.
var (
	Compressors   = registry.New[*CompressorLibrary]("compressor library")
	Decompressors = registry.New[*DecompressorLibrary]("decompressor library")
)

func registerCompressor[C proto.Message](name string, empty C, build func(C, string) (*CompressorFactory, error)) {
	Compressors.Register(name, empty, &CompressorLibrary{
		NewConfig: func() proto.Message { return empty.ProtoReflect().New().Interface() },
		Build:     func(m proto.Message, path string) (*CompressorFactory, error) { return build(m.(C), path) },
	})
}

func registerDecompressor[C proto.Message](name string, empty C, build func(C, string) (*DecompressorFactory, error)) {
	Decompressors.Register(name, empty, &DecompressorLibrary{
		NewConfig: func() proto.Message { return empty.ProtoReflect().New().Interface() },
		Build:     func(m proto.Message, path string) (*DecompressorFactory, error) { return build(m.(C), path) },
	})
}

// BuildCompressor builds the compressor library of a filter's
// compressor_library (at path).
func BuildCompressor(tec *corev3.TypedExtensionConfig, path string) (*CompressorFactory, error) {
	lib, cfg, err := lookup(Compressors, tec, path, func(l *CompressorLibrary) proto.Message { return l.NewConfig() })
	if err != nil {
		return nil, err
	}
	return lib.Build(cfg, path+".typed_config")
}

// BuildDecompressor builds the decompressor library of a filter's
// decompressor_library (at path).
func BuildDecompressor(tec *corev3.TypedExtensionConfig, path string) (*DecompressorFactory, error) {
	lib, cfg, err := lookup(Decompressors, tec, path, func(l *DecompressorLibrary) proto.Message { return l.NewConfig() })
	if err != nil {
		return nil, err
	}
	return lib.Build(cfg, path+".typed_config")
}

func lookup[E any](r *registry.Registry[E], tec *corev3.TypedExtensionConfig, path string, newCfg func(E) proto.Message) (E, proto.Message, error) {
	var zero E
	if tec == nil {
		return zero, nil, configerr.At(path, "%s is required", r.Kind())
	}
	url := tec.GetTypedConfig().GetTypeUrl()
	lib, ok := r.ByTypeURL(url)
	if !ok {
		return zero, nil, configerr.At(path+".typed_config", "unknown %s %q", r.Kind(), url).
			WithHint("supported: %v", r.TypeURLs())
	}
	cfg := newCfg(lib)
	if err := anypb.UnmarshalTo(tec.GetTypedConfig(), cfg, proto.UnmarshalOptions{}); err != nil {
		return zero, nil, configerr.At(path+".typed_config", "%v", err)
	}
	if v, ok := cfg.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return zero, nil, configerr.At(path+".typed_config", "%v", err)
		}
	}
	return lib, cfg, nil
}

// streamWriter is what each library's streaming writer offers (gzip.Writer,
// brotli.Writer, zstd.Encoder): the libraries differ only in how the
// writer is made.
type streamWriter interface {
	io.WriteCloser
	Flush() error
	Reset(io.Writer)
}

// newCompressorFactory is the shared plumbing of the compressor
// libraries: writers made by newWriter (once per pooled compressor, not
// per stream) write into the caller's dst.
func newCompressorFactory[W streamWriter](encoding, statPrefix string, newWriter func() W) *CompressorFactory {
	pool := &sync.Pool{New: func() any { return &writerCompressor[W]{w: newWriter()} }}
	return &CompressorFactory{
		Encoding:   encoding,
		StatPrefix: statPrefix,
		New: func() Compressor {
			c := pool.Get().(*writerCompressor[W])
			c.pool = pool
			c.w.Reset(&c.sink)
			return c
		},
	}
}

// writerCompressor is a Compressor over a library's streamWriter.
type writerCompressor[W streamWriter] struct {
	w    W
	sink appendWriter
	pool *sync.Pool
}

// Compress implements Compressor.
func (c *writerCompressor[W]) Compress(dst, p []byte, finish bool) ([]byte, error) {
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
func (c *writerCompressor[W]) Release() {
	c.sink.b = nil
	c.w.Reset(io.Discard)
	c.pool.Put(c)
}

// appendWriter is an io.Writer that appends to b: compressors write their
// output into the caller's dst.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
