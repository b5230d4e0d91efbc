package grpcweb

import (
	grpcwebv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_web/v3"

	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

func init() {
	httpfilter.Register(httpfilter.Extension[*grpcwebv3.GrpcWeb]{
		Name:   Name,
		Config: &grpcwebv3.GrpcWeb{},
		Build:  Build,
	})
}

// Name is the filter's Envoy name.
const Name = "envoy.filters.http.grpc_web"

// Envoy's content types (Http::Headers::get().ContentTypeValues) and
// response code details (grpc_web_filter.cc RcDetailsValues).
const (
	contentTypeGRPC             = "application/grpc"
	contentTypeGRPCWeb          = "application/grpc-web"
	contentTypeGRPCWebProto     = "application/grpc-web+proto"
	contentTypeGRPCWebText      = "application/grpc-web-text"
	contentTypeGRPCWebTextProto = "application/grpc-web-text+proto"
	grpcAcceptEncodingDefault   = "identity,deflate,gzip"
	detailsDecodeFailedBadSize  = "grpc_base_64_decode_failed_bad_size"
	detailsDecodeFailed         = "grpc_base_64_decode_failed"
	bodyInvalidBase64           = "Bad gRPC-web request, invalid base64 data."
	maxBufferedPlaintextLength  = 16384
	trailerFrameFlag            = 0x80
	frameHeaderLength           = 5
)

// Config is the built filter; GrpcWeb has no fields. Immutable.
type Config struct{}

// Build interprets the filter's GrpcWeb once per snapshot.
func Build(_ *grpcwebv3.GrpcWeb, _ httpfilter.BuildContext) (httpfilter.Factory, error) {
	c := &Config{}
	return c.newFilter, nil
}

func (c *Config) newFilter(cb httpfilter.Callbacks) httpfilter.Filter {
	return &Filter{cb: cb}
}
