package http

// GRPCContentType is gRPC's content type.
const GRPCContentType = "application/grpc"

// IsGRPCContentType is Envoy's Grpc::Common::hasGrpcContentType:
// "application/grpc" or "application/grpc+<subtype>" ("application/grpc-web"
// is not gRPC).
func IsGRPCContentType(ct string) bool {
	return len(ct) >= len(GRPCContentType) && ct[:len(GRPCContentType)] == GRPCContentType &&
		(len(ct) == len(GRPCContentType) || ct[len(GRPCContentType)] == '+')
}

// IsGRPCResponseHeaders is Envoy's Grpc::Common::isGrpcResponseHeaders: a
// trailers-only response (endStream) needs only grpc-status; otherwise
// :status 200 and a gRPC content type.
func IsGRPCResponseHeaders(h *Headers, endStream bool) bool {
	if endStream {
		return h.Has("grpc-status")
	}
	return h.StatusCode() == 200 && IsGRPCContentType(h.Get("content-type"))
}
