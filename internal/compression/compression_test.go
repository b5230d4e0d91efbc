package compression

import (
	"bytes"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	brotlicv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/brotli/compressor/v3"
	brotlidv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/brotli/decompressor/v3"
	gzipcv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/gzip/compressor/v3"
	gzipdv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/gzip/decompressor/v3"
	zstdcv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/zstd/compressor/v3"
	zstddv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/compression/zstd/decompressor/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func typed(t testing.TB, name string, m proto.Message) *corev3.TypedExtensionConfig {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.TypedExtensionConfig{Name: name, TypedConfig: a}
}

type lib struct {
	name     string
	comp     proto.Message
	decomp   proto.Message
	encoding string
}

var libs = []lib{
	{name: "gzip", comp: &gzipcv3.Gzip{}, decomp: &gzipdv3.Gzip{}, encoding: "gzip"},
	{name: "gzip best", comp: &gzipcv3.Gzip{CompressionLevel: gzipcv3.Gzip_BEST_COMPRESSION, WindowBits: wrapperspb.UInt32(10), MemoryLevel: wrapperspb.UInt32(3)}, decomp: &gzipdv3.Gzip{}, encoding: "gzip"},
	{name: "gzip huffman", comp: &gzipcv3.Gzip{CompressionStrategy: gzipcv3.Gzip_HUFFMAN_ONLY}, decomp: &gzipdv3.Gzip{}, encoding: "gzip"},
	{name: "brotli", comp: &brotlicv3.Brotli{}, decomp: &brotlidv3.Brotli{}, encoding: "br"},
	{name: "brotli q11", comp: &brotlicv3.Brotli{Quality: wrapperspb.UInt32(11), WindowBits: wrapperspb.UInt32(22)}, decomp: &brotlidv3.Brotli{}, encoding: "br"},
	{name: "zstd", comp: &zstdcv3.Zstd{}, decomp: &zstddv3.Zstd{}, encoding: "zstd"},
	{name: "zstd checksum", comp: &zstdcv3.Zstd{CompressionLevel: wrapperspb.UInt32(9), EnableChecksum: true}, decomp: &zstddv3.Zstd{}, encoding: "zstd"},
}

func payload(n int) []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d: the quick brown fox jumps over the lazy dog\n", i)
	}
	return b.Bytes()[:n]
}

// TestRoundTripStreamed compresses a body chunk by chunk, flushing each,
// and checks that every flushed chunk decodes at once (a receiver sees each
// DATA frame's content without waiting for the end), then that the whole
// body round-trips when the compressed bytes arrive in odd pieces.
func TestRoundTripStreamed(t *testing.T) {
	body := payload(100_000)
	chunks := [][]byte{body[:10], body[10:5000], body[5000:5000], body[5000:70000], body[70000:]}
	for _, l := range libs {
		t.Run(l.name, func(t *testing.T) {
			cf, err := BuildCompressor(typed(t, "c", l.comp), "c")
			if err != nil {
				t.Fatal(err)
			}
			df, err := BuildDecompressor(typed(t, "d", l.decomp), "d")
			if err != nil {
				t.Fatal(err)
			}
			if cf.Encoding != l.encoding || df.Encoding != l.encoding {
				t.Fatalf("encodings %q/%q, want %q", cf.Encoding, df.Encoding, l.encoding)
			}
			c := cf.New()
			defer c.Release()
			d := df.New()
			defer d.Release()
			var compressed, got []byte
			for i, ch := range chunks {
				last := i == len(chunks)-1
				out, err := c.Compress(nil, ch, last)
				if err != nil {
					t.Fatalf("compress: %v", err)
				}
				compressed = append(compressed, out...)
				dec, err := d.Decompress(nil, out, last)
				if err != nil {
					t.Fatalf("decompress chunk %d: %v", i, err)
				}
				got = append(got, dec...)
				if want := body[:len(got)]; !bytes.Equal(got, want) || (!last && len(got) != sumLen(chunks[:i+1])) {
					t.Fatalf("after chunk %d decoded %d bytes, want the %d sent so far", i, len(got), sumLen(chunks[:i+1]))
				}
			}
			if !bytes.Equal(got, body) {
				t.Fatalf("round trip: got %d bytes, want %d", len(got), len(body))
			}
			if len(compressed) >= len(body)/2 && l.name != "gzip huffman" {
				t.Errorf("compressed %d bytes to %d: not compressed", len(body), len(compressed))
			}
			// The same stream fed in 7-byte pieces.
			d2 := df.New()
			defer d2.Release()
			var got2 []byte
			for i := 0; i < len(compressed); i += 7 {
				end := min(i+7, len(compressed))
				out, err := d2.Decompress(nil, compressed[i:end], end == len(compressed))
				if err != nil {
					t.Fatalf("decompress piece at %d: %v", i, err)
				}
				got2 = append(got2, out...)
			}
			if !bytes.Equal(got2, body) {
				t.Fatalf("piecewise round trip: got %d bytes, want %d", len(got2), len(body))
			}
		})
	}
}

func sumLen(bs [][]byte) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

func TestDecompressErrors(t *testing.T) {
	tests := []struct {
		name    string
		decomp  proto.Message
		comp    proto.Message
		input   func(compressed []byte) []byte
		wantErr error // nil: any error
	}{
		{name: "gzip garbage", decomp: &gzipdv3.Gzip{}, input: func([]byte) []byte { return []byte("not gzip at all") }},
		{name: "gzip truncated", decomp: &gzipdv3.Gzip{}, comp: &gzipcv3.Gzip{}, input: func(c []byte) []byte { return c[:len(c)-4] }},
		{name: "brotli garbage", decomp: &brotlidv3.Brotli{}, input: func([]byte) []byte { return bytes.Repeat([]byte{0xff}, 64) }},
		{name: "zstd garbage", decomp: &zstddv3.Zstd{}, input: func([]byte) []byte { return []byte("not zstd at all") }},
		{
			// 100 KiB of zeros compress far beyond a ratio of 10.
			name: "gzip bomb", decomp: &gzipdv3.Gzip{MaxInflateRatio: wrapperspb.UInt32(10)}, comp: &gzipcv3.Gzip{},
			input: func(c []byte) []byte { return c }, wantErr: ErrInflateRatio,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var compressed []byte
			if tc.comp != nil {
				cf, err := BuildCompressor(typed(t, "c", tc.comp), "c")
				if err != nil {
					t.Fatal(err)
				}
				c := cf.New()
				compressed, _ = c.Compress(nil, make([]byte, 100<<10), true)
				c.Release()
			}
			df, err := BuildDecompressor(typed(t, "d", tc.decomp), "d")
			if err != nil {
				t.Fatal(err)
			}
			d := df.New()
			defer d.Release()
			_, err = d.Decompress(nil, tc.input(compressed), true)
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     *corev3.TypedExtensionConfig
		decomp  bool
		wantErr string
	}{
		{name: "missing", cfg: nil, wantErr: "p: compressor library is required"},
		{name: "unknown type", cfg: typed(t, "x", &gzipdv3.Gzip{}), wantErr: "p.typed_config: unknown compressor library"},
		{name: "gzip strategy", cfg: typed(t, "x", &gzipcv3.Gzip{CompressionStrategy: gzipcv3.Gzip_RLE}), wantErr: "p.typed_config.compression_strategy: compression_strategy RLE is not supported"},
		{name: "brotli mode", cfg: typed(t, "x", &brotlicv3.Brotli{EncoderMode: brotlicv3.Brotli_TEXT}), wantErr: "p.typed_config.encoder_mode"},
		{name: "zstd dictionary", cfg: typed(t, "x", &zstdcv3.Zstd{Dictionary: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "d"}}}), wantErr: "p.typed_config.dictionary"},
		{name: "zstd dictionaries", decomp: true, cfg: typed(t, "x", &zstddv3.Zstd{Dictionaries: []*corev3.DataSource{{Specifier: &corev3.DataSource_InlineString{InlineString: "d"}}}}), wantErr: "p.typed_config.dictionaries"},
		{name: "brotli quality out of range", cfg: typed(t, "x", &brotlicv3.Brotli{Quality: wrapperspb.UInt32(12)}), wantErr: "p.typed_config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if tc.decomp {
				_, err = BuildDecompressor(tc.cfg, "p")
			} else {
				_, err = BuildCompressor(tc.cfg, "p")
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

// TestReleaseMidStream: a decompressor released before its body ended
// leaves no goroutine behind.
func TestReleaseMidStream(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, l := range libs {
		cf, _ := BuildCompressor(typed(t, "c", l.comp), "c")
		df, _ := BuildDecompressor(typed(t, "d", l.decomp), "d")
		c := cf.New()
		out, _ := c.Compress(nil, payload(1000), false)
		c.Release()
		d := df.New()
		if _, err := d.Decompress(nil, out, false); err != nil {
			t.Fatalf("%s: %v", l.name, err)
		}
		d.Release()
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Errorf("goroutines %d after, %d before", after, before)
	}
}

// FuzzDecompress feeds untrusted bytes to every decompressor in two
// pieces: it must return (maybe an error), never panic or hang.
func FuzzDecompress(f *testing.F) {
	seeds := [][]byte{[]byte("not compressed"), {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff}, {0x28, 0xb5, 0x2f, 0xfd}, {0xff, 0xff}}
	for _, s := range seeds {
		f.Add(s, uint8(3))
	}
	factories := map[string]*DecompressorFactory{}
	for _, name := range []string{GzipDecompressorName, BrotliDecompressorName, ZstdDecompressorName} {
		lib, _ := Decompressors.ByName(name)
		df, err := lib.Build(lib.NewConfig(), "d")
		if err != nil {
			f.Fatal(err)
		}
		factories[name] = df
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint8) {
		cut := min(int(split), len(data))
		for _, df := range factories {
			d := df.New()
			out, err := d.Decompress(nil, data[:cut], false)
			if err == nil {
				out, _ = d.Decompress(out, data[cut:], true)
			}
			_ = out
			d.Release()
		}
	})
}

// TestReuseAfterAbnormalEnd: compressors and decompressors are pooled per
// factory, so a stream that ended abnormally (released mid-body, a
// decoding error) must leave nothing behind for the next stream of the
// same factory, and a compressor's second stream is a complete stream of
// its own.
func TestReuseAfterAbnormalEnd(t *testing.T) {
	body := payload(20_000)
	for _, l := range libs {
		t.Run(l.name, func(t *testing.T) {
			cf, err := BuildCompressor(typed(t, "c", l.comp), "c")
			if err != nil {
				t.Fatal(err)
			}
			df, err := BuildDecompressor(typed(t, "d", l.decomp), "d")
			if err != nil {
				t.Fatal(err)
			}
			compress := func() []byte {
				c := cf.New()
				defer c.Release()
				out, err := c.Compress(nil, body[:5000], false)
				if err != nil {
					t.Fatal(err)
				}
				out, err = c.Compress(out, body[5000:], true)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			first := compress()
			// A compressor released mid-stream goes back to the pool.
			c := cf.New()
			if _, err := c.Compress(nil, body[:100], false); err != nil {
				t.Fatal(err)
			}
			c.Release()
			if second := compress(); !bytes.Equal(second, first) {
				t.Fatalf("a reused compressor's stream differs: %d bytes, first %d", len(second), len(first))
			}
			abnormal := []struct {
				name  string
				input []byte
				end   bool
			}{
				{name: "released mid-body", input: first[:len(first)/2], end: false},
				{name: "garbage", input: bytes.Repeat([]byte{0xff}, 64), end: true},
				{name: "truncated", input: first[:len(first)-3], end: true},
			}
			for i := 0; i < 3; i++ {
				for _, a := range abnormal {
					d := df.New()
					_, _ = d.Decompress(nil, a.input, a.end)
					d.Release()
					d = df.New()
					var got []byte
					for j := 0; j < len(first); j += 1000 {
						end := min(j+1000, len(first))
						got, err = d.Decompress(got, first[j:end], end == len(first))
						if err != nil {
							t.Fatalf("after %s: %v", a.name, err)
						}
					}
					d.Release()
					if !bytes.Equal(got, body) {
						t.Fatalf("after %s: decoded %d bytes, want %d", a.name, len(got), len(body))
					}
				}
			}
		})
	}
}

// BenchmarkDecompressStream is one request's decompression: a
// decompressor for the stream, the body in 4 KiB chunks, release.
func BenchmarkDecompressStream(b *testing.B) {
	body := payload(64 << 10)
	for _, l := range libs[:len(libs):len(libs)] {
		if strings.Contains(l.name, " ") {
			continue
		}
		b.Run(l.name, func(b *testing.B) {
			cf, _ := BuildCompressor(typed(b, "c", l.comp), "c")
			df, _ := BuildDecompressor(typed(b, "d", l.decomp), "d")
			c := cf.New()
			compressed, _ := c.Compress(nil, body, true)
			c.Release()
			buf := make([]byte, 0, 64<<10)
			b.ReportAllocs()
			for b.Loop() {
				d := df.New()
				for j := 0; j < len(compressed); j += 4 << 10 {
					end := min(j+4<<10, len(compressed))
					buf, _ = d.Decompress(buf[:0], compressed[j:end], end == len(compressed))
				}
				d.Release()
			}
		})
	}
}
