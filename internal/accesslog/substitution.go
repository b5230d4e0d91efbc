package accesslog

import (
	"errors"
	"os"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/configerr"
)

// FormatterFromProto compiles a SubstitutionFormatString (an access logger's
// log_format, a local reply's body_format). nil means Envoy's default format.
// path is the YAML path of sfs; errors are *configerr.FieldError below it.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/substitution_format_string.proto
func FormatterFromProto(sfs *corev3.SubstitutionFormatString, path string) (*Formatter, error) {
	if sfs == nil {
		return MustNewFormatter(DefaultFormat), nil
	}
	if len(sfs.GetFormatters()) > 0 {
		return nil, configerr.At(path+".formatters", "formatter extensions are not supported by herald yet (%s)",
			sfs.GetFormatters()[0].GetName())
	}
	text := TextOptions{OmitEmptyValues: sfs.GetOmitEmptyValues(), ContentType: sfs.GetContentType()}
	switch f := sfs.GetFormat().(type) {
	case *corev3.SubstitutionFormatString_TextFormat:
		return textFormatter(f.TextFormat, text, path+".text_format")
	case *corev3.SubstitutionFormatString_TextFormatSource:
		format, sub, err := readDataSource(f.TextFormatSource)
		p := path + ".text_format_source"
		if sub != "" {
			p += "." + sub
		}
		if err != nil {
			return nil, configerr.At(p, "%v", err)
		}
		return textFormatter(format, text, p)
	case *corev3.SubstitutionFormatString_JsonFormat:
		// json_format_options.sort_properties needs nothing: properties are
		// always sorted, as in Envoy.
		jf, err := NewJSONFormatter(f.JsonFormat, JSONOptions{
			OmitEmptyValues: sfs.GetOmitEmptyValues(),
			ContentType:     sfs.GetContentType(),
		})
		if err != nil {
			return nil, jsonFieldError(err, path+".json_format")
		}
		return jf, nil
	}
	return nil, configerr.At(path, "one of text_format, text_format_source or json_format must be set")
}

func textFormatter(format string, opts TextOptions, path string) (*Formatter, error) {
	f, err := NewFormatterWithOptions(format, opts)
	if err != nil {
		return nil, configerr.At(path, "%v", err)
	}
	return f, nil
}

// jsonFieldError turns a NewJSONFormatter error into a FieldError at the
// offending key.
func jsonFieldError(err error, path string) error {
	var fe *JSONFieldError
	if errors.As(err, &fe) {
		return configerr.At(path+"."+fe.Key, "%v", fe.Err)
	}
	return configerr.At(path, "%v", err)
}

// JSONFormatterFromStruct is NewJSONFormatter with errors as
// *configerr.FieldError below path, for the legacy json_format fields.
func JSONFormatterFromStruct(fields *structpb.Struct, opts JSONOptions, path string) (*Formatter, error) {
	f, err := NewJSONFormatter(fields, opts)
	if err != nil {
		return nil, jsonFieldError(err, path)
	}
	return f, nil
}

// TextFormatterAt is NewFormatterWithOptions with errors as
// *configerr.FieldError at path, for the legacy format fields.
func TextFormatterAt(format string, opts TextOptions, path string) (*Formatter, error) {
	return textFormatter(format, opts, path)
}

// readDataSource returns the text of a DataSource and the name of the field
// that held it. Files and environment variables are read once, at load.
func readDataSource(ds *corev3.DataSource) (text, field string, err error) {
	switch s := ds.GetSpecifier().(type) {
	case *corev3.DataSource_InlineString:
		return s.InlineString, "inline_string", nil
	case *corev3.DataSource_InlineBytes:
		return string(s.InlineBytes), "inline_bytes", nil
	case *corev3.DataSource_Filename:
		b, err := os.ReadFile(s.Filename)
		if err != nil {
			return "", "filename", err
		}
		return string(b), "filename", nil
	case *corev3.DataSource_EnvironmentVariable:
		v, ok := os.LookupEnv(s.EnvironmentVariable)
		if !ok {
			return "", "environment_variable", errors.New("environment variable " + s.EnvironmentVariable + " is not set")
		}
		return v, "environment_variable", nil
	}
	return "", "", errors.New("data source is empty")
}
