package accesslog

import (
	"encoding/json"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/herald-proxy/herald/internal/streaminfo"
)

// metadataPath is %DYNAMIC_METADATA(NAMESPACE:KEY*)%'s parameter: the
// filter namespace and the nested keys (none: the whole namespace).
type metadataPath struct {
	namespace string
	keys      []string
}

// parseMetadataPath splits "NAMESPACE:KEY:KEY" on ':' (Envoy's
// SubstitutionFormatUtils::parseSubcommand with ':' as separator).
func parseMetadataPath(sub string) *metadataPath {
	parts := strings.Split(sub, ":")
	return &metadataPath{namespace: parts[0], keys: parts[1:]}
}

// appendDynamicMetadata is Envoy's DynamicMetadataFormatter
// (https://www.envoyproxy.io/docs/envoy/latest/configuration/observability/access_log/usage#config-access-log-format-dynamic-metadata):
// the value at the path, a string as it is, a number as a number, other
// values (bool, null, list, struct) as compact JSON; unset ("-") when the
// namespace or a key is missing. :Z truncates. In JSON formats a struct
// value is logged as a JSON string, not as a nested object.
func (o *op) appendDynamicMetadata(dst []byte, info *streaminfo.Info) ([]byte, valueKind) {
	ns := info.DynamicMetadataFor(o.metadata.namespace)
	if ns == nil {
		return dst, valueUnset
	}
	// Walk from the namespace's Struct itself: wrapping it in a Value
	// (structpb.NewStructValue) would allocate on every log line.
	var v *structpb.Value
	s := ns
	for _, k := range o.metadata.keys {
		if s == nil {
			return dst, valueUnset
		}
		if v = s.GetFields()[k]; v == nil {
			return dst, valueUnset
		}
		s = v.GetStructValue()
	}
	start := len(dst)
	kind := valueString
	var x any = ns
	if v != nil {
		x = v.GetKind()
	}
	switch x := x.(type) {
	case *structpb.Value_StringValue:
		dst = append(dst, x.StringValue...)
	case *structpb.Value_NumberValue:
		dst = strconv.AppendFloat(dst, x.NumberValue, 'g', -1, 64)
		kind = valueNumber
	case *structpb.Struct:
		b, err := json.Marshal(x.AsMap())
		if err != nil {
			return dst, valueUnset
		}
		dst = append(dst, b...)
	default:
		b, err := json.Marshal(v.AsInterface())
		if err != nil {
			return dst, valueUnset
		}
		dst = append(dst, b...)
	}
	if o.maxLen >= 0 && len(dst)-start > o.maxLen {
		dst = dst[:start+o.maxLen]
		kind = valueString
	}
	return dst, kind
}
