package tlsx

import (
	"os"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/herald-proxy/herald/internal/configerr"
)

// LoadDataSource reads a config.core.v3.DataSource: filename,
// inline_bytes, inline_string or environment_variable
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/base.proto#config-core-v3-datasource).
// path is the YAML path of the DataSource, for errors. Envoy reads the
// data when the config loads, so a missing file or variable is a config
// error, as it is in Envoy's validate mode.
func LoadDataSource(ds *corev3.DataSource, path string) ([]byte, *configerr.FieldError) {
	if ds == nil {
		return nil, configerr.At(path, "is required")
	}
	if errs := configerr.CheckFields(ds, path, "filename", "inline_bytes", "inline_string", "environment_variable"); len(errs) > 0 {
		return nil, errs[0]
	}
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_Filename:
		b, err := os.ReadFile(s.Filename)
		if err != nil {
			return nil, configerr.At(path+".filename", "cannot read %q: %v", s.Filename, unwrapPathError(err))
		}
		return b, nil
	case *corev3.DataSource_InlineBytes:
		return s.InlineBytes, nil
	case *corev3.DataSource_InlineString:
		return []byte(s.InlineString), nil
	case *corev3.DataSource_EnvironmentVariable:
		v, ok := os.LookupEnv(s.EnvironmentVariable)
		if !ok {
			// Envoy: "Environment variable doesn't exist: NAME".
			return nil, configerr.At(path+".environment_variable", "environment variable %q is not set", s.EnvironmentVariable)
		}
		return []byte(v), nil
	}
	return nil, configerr.At(path, "one of filename, inline_bytes, inline_string or environment_variable is required")
}

func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
