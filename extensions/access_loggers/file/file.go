package file

import (
	"errors"

	filev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/file/v3"

	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/configerr"
)

// Name is the Envoy name of the extension.
const Name = "envoy.access_loggers.file"

func init() {
	accesslog.Register(accesslog.Extension[*filev3.FileAccessLog]{
		Name:   Name,
		Config: &filev3.FileAccessLog{},
		Build:  build,
	})
}

// build compiles the format and opens (or shares) the file. The file is
// opened at load, as Envoy does, so an unwritable path is a config error.
func build(cfg *filev3.FileAccessLog, ctx accesslog.BuildContext) (accesslog.Logger, error) {
	f, err := formatter(cfg, ctx.Path)
	if err != nil {
		return nil, err
	}
	if ctx.Files == nil {
		return nil, errors.New("access_loggers.file: no file manager in the build context")
	}
	file, err := ctx.Files.Open(cfg.GetPath())
	if err != nil {
		return nil, configerr.At(ctx.Path+".path", "%v", err)
	}
	return accesslog.NewFileLogger(f, file), nil
}

// formatter picks the format: log_format, or one of the deprecated format,
// json_format (values rendered as strings) and typed_json_format fields;
// none, or an empty format, is Envoy's default format.
func formatter(cfg *filev3.FileAccessLog, path string) (*accesslog.Formatter, error) {
	switch f := cfg.GetAccessLogFormat().(type) {
	case *filev3.FileAccessLog_LogFormat:
		return accesslog.FormatterFromProto(f.LogFormat, path+".log_format")
	case *filev3.FileAccessLog_Format:
		if f.Format == "" {
			return accesslog.MustNewFormatter(accesslog.DefaultFormat), nil
		}
		return accesslog.TextFormatterAt(f.Format, accesslog.TextOptions{}, path+".format")
	case *filev3.FileAccessLog_JsonFormat:
		return accesslog.JSONFormatterFromStruct(f.JsonFormat, accesslog.JSONOptions{Untyped: true}, path+".json_format")
	case *filev3.FileAccessLog_TypedJsonFormat:
		return accesslog.JSONFormatterFromStruct(f.TypedJsonFormat, accesslog.JSONOptions{}, path+".typed_json_format")
	}
	return accesslog.MustNewFormatter(accesslog.DefaultFormat), nil
}
