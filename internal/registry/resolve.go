package registry

import (
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Resolve finds the extension for a configured `name` + `typed_config` (by
// type URL, or by name when typed_config is absent, as Envoy allows for
// extensions without config) and unpacks the config into a fresh message
// from newCfg. path is the YAML path of the extension's config block (the
// one holding name and typed_config). Errors name the extension, say it is
// not supported, and list what is.
func Resolve[E any](r *Registry[E], newCfg func(E) proto.Message, name string, tc *anypb.Any, path string) (E, proto.Message, *configerr.FieldError) {
	var zero E
	var e E
	var ok bool
	if tc != nil && tc.GetTypeUrl() == "" && len(tc.GetValue()) == 0 {
		// "typed_config: {}": Envoy finds the factory by name and uses its
		// default (empty) config.
		tc = nil
	}
	if tc != nil {
		if e, ok = r.ByTypeURL(tc.GetTypeUrl()); !ok {
			return zero, nil, configerr.At(path+".typed_config", "%s %q (%s) is not supported by herald", r.Kind(), name, tc.GetTypeUrl()).
				WithHint("supported: %s", strings.Join(r.Names(), ", "))
		}
	} else if e, ok = r.ByName(name); !ok {
		return zero, nil, configerr.At(path+".name", "%s %q is not supported by herald", r.Kind(), name).
			WithHint("supported: %s", strings.Join(r.Names(), ", "))
	}
	cfg := newCfg(e)
	if tc != nil {
		if err := tc.UnmarshalTo(cfg); err != nil {
			return zero, nil, configerr.At(path+".typed_config", "cannot decode %s: %v", tc.GetTypeUrl(), err)
		}
	}
	return e, cfg, nil
}
