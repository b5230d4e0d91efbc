package xds

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/herald-proxy/herald/internal/bootstrap"
	"github.com/herald-proxy/herald/internal/configerr"
)

// Resource type URLs of the v3 xDS API
// (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#resource-types).
const (
	typePrefix        = "type.googleapis.com/"
	ListenerType      = typePrefix + "envoy.config.listener.v3.Listener"
	RouteType         = typePrefix + "envoy.config.route.v3.RouteConfiguration"
	ScopedRouteType   = typePrefix + "envoy.config.route.v3.ScopedRouteConfiguration"
	ClusterType       = typePrefix + "envoy.config.cluster.v3.Cluster"
	EndpointType      = typePrefix + "envoy.config.endpoint.v3.ClusterLoadAssignment"
	SecretType        = typePrefix + "envoy.extensions.transport_sockets.tls.v3.Secret"
	resourceWrapperTy = typePrefix + "envoy.service.discovery.v3.Resource"
)

// kinds names each type in NACK messages and logs, as Envoy's docs do.
var kinds = map[string]string{
	ListenerType:    "listener",
	RouteType:       "route_configuration",
	ScopedRouteType: "scoped_route_configuration",
	ClusterType:     "cluster",
	EndpointType:    "cluster_load_assignment",
	SecretType:      "secret",
}

// requestOrder is the order initial requests go out on a new ADS stream:
// Envoy's warming sequence CDS → EDS → LDS → RDS
// (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol#eventual-consistency-considerations),
// then the rest. Types not listed sort after, by URL.
var requestOrder = map[string]int{ClusterType: 0, EndpointType: 1, ListenerType: 2, RouteType: 3, ScopedRouteType: 4, SecretType: 5}

// fullStateType reports whether a SotW response of typeURL carries every
// resource of the type, so a name missing from it is a removal. Envoy: "the
// Listener and Cluster resource types ... the server must include the
// complete state of the world" (xds_protocol#grouping-resources-into-responses).
func fullStateType(typeURL string) bool {
	return typeURL == ListenerType || typeURL == ClusterType
}

func kindOf(typeURL string) string {
	if k, ok := kinds[typeURL]; ok {
		return k
	}
	return strings.TrimPrefix(typeURL, typePrefix)
}

// Resource is one validated xDS resource. Immutable after delivery: an
// unchanged resource is the same *Resource in the next Update, so a caller
// may compare pointers to find what changed.
type Resource struct {
	// Name is the resource name (cluster_name for a ClusterLoadAssignment).
	Name string
	// Version is the delta per-resource version; for SotW and files it is the
	// version_info of the response that last changed the resource.
	Version string
	// Message is the unpacked, validated resource (*listenerv3.Listener, ...).
	Message proto.Message
	// Any is the resource as received.
	Any *anypb.Any
	// LastUpdated is when this version of the resource was accepted
	// (config_dump last_updated).
	LastUpdated time.Time
}

// resourceName returns the name of an xDS resource message.
func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case interface{ GetName() string }:
		return r.GetName()
	}
	return ""
}

// decoded is one resource of a response before it is merged into a cache.
type decoded struct {
	name    string
	version string
	any     *anypb.Any
	msg     proto.Message
}

// decodeAny unpacks a resource of typeURL (unwrapping a discovery Resource
// wrapper) and validates it with the generated ValidateAll, inside every
// nested Any too. Errors name the resource and the field.
func decodeAny(typeURL string, a *anypb.Any) (decoded, error) {
	if a.GetTypeUrl() == resourceWrapperTy {
		w := &discoveryv3.Resource{}
		if err := a.UnmarshalTo(w); err != nil {
			return decoded{}, fmt.Errorf("cannot decode %s wrapper: %w", kindOf(typeURL), err)
		}
		d, err := decodeAny(typeURL, w.GetResource())
		if err == nil && w.GetName() != "" && w.GetName() != d.name {
			err = fmt.Errorf("%s %q: wrapper name %q does not match", kindOf(typeURL), d.name, w.GetName())
		}
		d.version = w.GetVersion()
		return d, err
	}
	if a == nil {
		return decoded{}, fmt.Errorf("%s: empty resource", kindOf(typeURL))
	}
	if a.GetTypeUrl() != typeURL {
		return decoded{}, fmt.Errorf("%s: resource type %q does not match the subscription", kindOf(typeURL), a.GetTypeUrl())
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return decoded{}, fmt.Errorf("cannot decode %s: %w", kindOf(typeURL), err)
	}
	name := resourceName(m)
	if err := bootstrap.Validate(m, nil); err != nil {
		return decoded{}, fmt.Errorf("%s %q: %s", kindOf(typeURL), name, joinErrors(err))
	}
	return decoded{name: name, any: a, msg: m}, nil
}

// joinErrors flattens a configerr.List into one line for error_detail.
func joinErrors(err error) string {
	var l configerr.List
	if errors.As(err, &l) {
		parts := make([]string, len(l))
		for i, e := range l {
			parts[i] = e.Error()
		}
		return strings.Join(parts, "; ")
	}
	return err.Error()
}

// decodeAll decodes a SotW resource list; duplicate names are an error, as
// in Envoy's SotW subscriptions (xds_protocol#resource-updates).
func decodeAll(typeURL string, anys []*anypb.Any) ([]decoded, error) {
	out := make([]decoded, 0, len(anys))
	seen := make(map[string]bool, len(anys))
	var errs []string
	for _, a := range anys {
		d, err := decodeAny(typeURL, a)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if seen[d.name] {
			errs = append(errs, fmt.Sprintf("%s %q: duplicate resource name", kindOf(typeURL), d.name))
			continue
		}
		seen[d.name] = true
		out = append(out, d)
	}
	if len(errs) > 0 {
		return nil, errors.New(strings.Join(errs, "; "))
	}
	return out, nil
}

// sameAny reports whether two packed resources are byte-identical.
func sameAny(a, b *anypb.Any) bool {
	return a.GetTypeUrl() == b.GetTypeUrl() && bytes.Equal(a.GetValue(), b.GetValue())
}

// sortedNames returns the keys of set, sorted.
func sortedNames[V any](set map[string]V) []string {
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
