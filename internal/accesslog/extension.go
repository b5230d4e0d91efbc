package accesslog

import (
	"fmt"
	"strings"
	"sync"
	"unicode"

	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	"google.golang.org/protobuf/proto"

	"github.com/herald-proxy/herald/internal/configerr"
	"github.com/herald-proxy/herald/internal/registry"
	"github.com/herald-proxy/herald/internal/streaminfo"
)

// Logger writes one access log entry per finished stream or connection. Log
// runs on the goroutine that served the stream, after it ended; it must not
// block on I/O and must not keep info.
type Logger interface {
	Log(info *streaminfo.Info)
}

// BuildContext is what an access logger may use when it is built, once per
// config snapshot.
type BuildContext struct {
	// Path is the YAML path of the logger's config: of the AccessLog entry
	// when passed to Build, of its typed_config when passed to an
	// extension's Build.
	Path string
	// Files is the process's log file manager (it outlives snapshots).
	Files *FileManager
}

// Extension is one access logger kind.
type Extension[C proto.Message] struct {
	// Name is the Envoy name, e.g. "envoy.access_loggers.file".
	Name string
	// Config is an empty config message; its type URL keys the registry.
	Config C
	// Build interprets cfg once per snapshot. cfg has passed its proto
	// validation rules.
	Build func(cfg C, ctx BuildContext) (Logger, error)
}

// Entry is a registered access logger with its config type erased.
type Entry struct {
	Name      string
	NewConfig func() proto.Message
	Build     func(cfg proto.Message, ctx BuildContext) (Logger, error)
}

// Registry holds every access logger.
var Registry = registry.New[*Entry]("access logger")

// Register adds an access logger; call it from the extension's init.
func Register[C proto.Message](e Extension[C]) {
	if e.Build == nil {
		panic(fmt.Sprintf("accesslog: %s registered without Build", e.Name))
	}
	Registry.Register(e.Name, e.Config, &Entry{
		Name:      e.Name,
		NewConfig: func() proto.Message { return e.Config.ProtoReflect().New().Interface() },
		Build: func(cfg proto.Message, ctx BuildContext) (Logger, error) {
			c, ok := cfg.(C)
			if !ok {
				return nil, fmt.Errorf("%s: config is %T, want %T", e.Name, cfg, e.Config)
			}
			return e.Build(c, ctx)
		},
	})
}

// Build builds one config.accesslog.v3.AccessLog entry: the extension is
// found by the type URL of typed_config (or by name when typed_config is
// absent, with an empty config, as Envoy does), its config is unpacked and
// validated, and the entry's filter wraps the result. ctx.Path is the path
// of the entry ("...access_log[0]"); errors are *configerr.FieldError.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/accesslog/v3/accesslog.proto
func Build(cfg *accesslogv3.AccessLog, ctx BuildContext) (Logger, error) {
	var entry *Entry
	var msg proto.Message
	tc := cfg.GetTypedConfig()
	cfgPath := ctx.Path + ".typed_config"
	if tc != nil {
		e, ok := Registry.ByTypeURL(tc.GetTypeUrl())
		if !ok {
			return nil, configerr.At(cfgPath, "unknown access logger type %q", tc.GetTypeUrl()).
				WithHint("herald supports %s", strings.Join(Registry.TypeURLs(), ", "))
		}
		entry, msg = e, e.NewConfig()
		if err := tc.UnmarshalTo(msg); err != nil {
			return nil, configerr.At(cfgPath, "%s: %v", e.Name, err)
		}
	} else {
		e, ok := Registry.ByName(cfg.GetName())
		if !ok {
			return nil, configerr.At(ctx.Path+".name", "unknown access logger %q and no typed_config", cfg.GetName()).
				WithHint("herald supports %s", strings.Join(Registry.Names(), ", "))
		}
		entry, msg = e, e.NewConfig()
	}
	if v, ok := msg.(interface{ Validate() error }); ok {
		if err := v.Validate(); err != nil {
			return nil, validationError(err, cfgPath)
		}
	}
	l, err := entry.Build(msg, BuildContext{Path: cfgPath, Files: ctx.Files})
	if err != nil {
		return nil, err
	}
	if cfg.GetFilter() == nil {
		return l, nil
	}
	f, err := BuildFilter(cfg.GetFilter(), ctx.Path+".filter")
	if err != nil {
		return nil, err
	}
	return &filteredLogger{filter: f, next: l}, nil
}

// filteredLogger logs only the streams its filter matches.
type filteredLogger struct {
	// Immutable after Build:
	filter Filter
	next   Logger
}

// Log implements Logger.
func (l *filteredLogger) Log(info *streaminfo.Info) {
	if l.filter.Match(info) {
		l.next.Log(info)
	}
}

// validationError rewrites a protoc-gen-validate error ("invalid
// FileAccessLog.Path: value length must be at least 1 runes") to a
// FieldError at the field's YAML path.
func validationError(err error, path string) error {
	type fieldErr interface {
		Field() string
		Reason() string
	}
	if fe, ok := err.(fieldErr); ok {
		return configerr.At(path+"."+snakeCase(fe.Field()), "%s", fe.Reason())
	}
	return configerr.At(path, "%v", err)
}

// snakeCase turns a Go field name ("MaxRequestBytes") into its proto name.
func snakeCase(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// FileLogger formats each entry and hands it to a shared, buffered File.
// file and stream loggers are both this.
type FileLogger struct {
	// Immutable after construction:
	formatter *Formatter
	file      *File
}

// NewFileLogger returns a Logger writing f's lines to file.
func NewFileLogger(f *Formatter, file *File) *FileLogger {
	return &FileLogger{formatter: f, file: file}
}

// lineBufs recycles formatting buffers so Log does not allocate.
var lineBufs = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// Log implements Logger.
func (l *FileLogger) Log(info *streaminfo.Info) {
	bp := lineBufs.Get().(*[]byte)
	b := l.formatter.Format((*bp)[:0], info)
	l.file.Write(b)
	if cap(b) <= 64<<10 {
		*bp = b[:0]
		lineBufs.Put(bp)
	}
}

// Formatter returns the logger's formatter.
func (l *FileLogger) Formatter() *Formatter { return l.formatter }

// Path returns the path of the file the logger writes to.
func (l *FileLogger) Path() string { return l.file.Path() }

var (
	_ Logger = (*FileLogger)(nil)
	_ Logger = (*filteredLogger)(nil)
)

// FileSource is what owns the process's log files; internal/server
// implements it. Extensions reach it through their build context's Server.
type FileSource interface {
	AccessLogFiles() *FileManager
}

// BuildAll builds a list of access_log entries at path (".access_log" is
// appended) for the filter whose build context carries server. Every
// entry's errors are collected.
func BuildAll(cfgs []*accesslogv3.AccessLog, path string, server any) ([]Logger, configerr.List) {
	var files *FileManager
	if s, ok := server.(FileSource); ok {
		files = s.AccessLogFiles()
	}
	var out []Logger
	var errs configerr.List
	for i, al := range cfgs {
		apath := fmt.Sprintf("%s.access_log[%d]", path, i)
		l, err := Build(al, BuildContext{Path: apath, Files: files})
		if err != nil {
			errs = append(errs, configerr.Collect(err, apath, nil)...)
			continue
		}
		out = append(out, l)
	}
	return out, errs
}
