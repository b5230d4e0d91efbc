package stream

import (
	"errors"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/stream/v3"

	"github.com/herald-proxy/herald/internal/accesslog"
	"github.com/herald-proxy/herald/internal/configerr"
)

// Envoy names of the extensions.
const (
	StdoutName = "envoy.access_loggers.stdout"
	StderrName = "envoy.access_loggers.stderr"
)

func init() {
	accesslog.Register(accesslog.Extension[*streamv3.StdoutAccessLog]{
		Name:   StdoutName,
		Config: &streamv3.StdoutAccessLog{},
		Build: func(cfg *streamv3.StdoutAccessLog, ctx accesslog.BuildContext) (accesslog.Logger, error) {
			return build(cfg.GetLogFormat(), accesslog.StdoutPath, ctx)
		},
	})
	accesslog.Register(accesslog.Extension[*streamv3.StderrAccessLog]{
		Name:   StderrName,
		Config: &streamv3.StderrAccessLog{},
		Build: func(cfg *streamv3.StderrAccessLog, ctx accesslog.BuildContext) (accesslog.Logger, error) {
			return build(cfg.GetLogFormat(), accesslog.StderrPath, ctx)
		},
	})
}

// build compiles log_format (Envoy's default format when unset) and shares
// the process-wide writer of stdout or stderr.
func build(format *corev3.SubstitutionFormatString, path string, ctx accesslog.BuildContext) (accesslog.Logger, error) {
	f, err := accesslog.FormatterFromProto(format, ctx.Path+".log_format")
	if err != nil {
		return nil, err
	}
	if ctx.Files == nil {
		return nil, errors.New("access_loggers.stream: no file manager in the build context")
	}
	file, err := ctx.Files.Open(path)
	if err != nil {
		return nil, configerr.At(ctx.Path, "%v", err)
	}
	return accesslog.NewFileLogger(f, file), nil
}
