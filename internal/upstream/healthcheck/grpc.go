package healthcheck

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"

	hhttp "github.com/herald-proxy/herald/internal/http"
	"github.com/herald-proxy/herald/internal/http/codec/http2"
)

// gRPC health checking protocol
// (https://github.com/grpc/grpc/blob/master/doc/health-checking.md):
// grpc.health.v1.Health/Check with HealthCheckRequest{string service = 1}
// answered by HealthCheckResponse{ServingStatus status = 1}. The two
// one-field messages are encoded with protowire, which spares herald a
// dependency on grpc-go.
const (
	grpcHealthPath = "/grpc.health.v1.Health/Check"
	// servingStatusServing is HealthCheckResponse.ServingStatus SERVING.
	servingStatusServing = 1
	// maxGRPCResponse bounds the response body read.
	maxGRPCResponse = 64 << 10
)

// grpcProber is GrpcHealthCheckerImpl, over herald's HTTP/2 client.
type grpcProber struct {
	cfg    *Config
	dial   DialFunc
	client *http2.Client // nil without reuse_connection
	frame  []byte        // the request message, framed; immutable
}

func newGRPCProber(cfg *Config, dial DialFunc) *grpcProber {
	p := &grpcProber{cfg: cfg, dial: dial}
	if cfg.ReuseConnection {
		p.client = newHTTP2Client()
	}
	var msg []byte
	if cfg.GRPC.ServiceName != "" {
		msg = protowire.AppendTag(msg, 1, protowire.BytesType)
		msg = protowire.AppendString(msg, cfg.GRPC.ServiceName)
	}
	p.frame = make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(p.frame[1:], uint32(len(msg)))
	p.frame = append(p.frame, msg...)
	return p
}

func (p *grpcProber) newSession(addr string) probeSession { return &grpcSession{p: p, addr: addr} }

func (p *grpcProber) close() {
	if p.client != nil {
		_ = p.client.Close()
	}
}

type grpcSession struct {
	p    *grpcProber
	addr string
}

// request is GrpcActiveHealthCheckSession::onInterval's header set:
// Grpc::Common::prepareHeaders plus user-agent, initial_metadata and
// grpc-timeout from the check timeout.
func (p *grpcProber) request() *hhttp.Headers {
	h := &hhttp.Headers{}
	h.Add(hhttp.Method, "POST")
	h.Add(hhttp.Scheme, "http")
	h.Add(hhttp.Authority, p.cfg.GRPC.Authority)
	h.Add(hhttp.Path, grpcHealthPath)
	h.Add("content-type", "application/grpc")
	h.Add("te", "trailers")
	h.Add("user-agent", UserAgent)
	p.cfg.GRPC.Metadata.apply(h)
	// Grpc::Common::toGrpcTimeout of the configured timeout, in ms.
	h.Set("grpc-timeout", strconv.FormatInt(max(p.cfg.Timeout.Milliseconds(), 1), 10)+"m")
	return h
}

func (s *grpcSession) check(ctx context.Context) Result {
	st, done, err := h2Stream(ctx, s.p.client, s.p.dial, s.addr)
	if err != nil {
		return networkResult(err)
	}
	defer done()
	res, complete := s.exchange(st)
	if complete {
		st.Close(nil)
	} else {
		st.Close(errors.New("healthcheck: grpc check failed"))
	}
	return res
}

// exchange sends the request and judges the answer as
// GrpcActiveHealthCheckSession does: any gRPC status but OK, a non-200
// HTTP status, or a status other than SERVING is an ACTIVE failure; a
// reset is a NETWORK failure.
func (s *grpcSession) exchange(st hhttp.UpstreamStream) (Result, bool) {
	if err := st.WriteHeaders(s.p.request(), false); err != nil {
		return networkResult(err), false
	}
	if err := st.WriteData(s.p.frame, true); err != nil {
		return networkResult(err), false
	}
	var resp hhttp.Headers
	end, err := st.ReadHeaders(&resp)
	if err != nil {
		return networkResult(err), false
	}
	if code := resp.Get(hhttp.Status); code != "200" {
		return Result{Outcome: Failure, Detail: "non-200 HTTP response " + code}, end
	}
	if end {
		// Trailers-only: how grpc-go reports an unknown service.
		return grpcFailure(resp.Get("grpc-status"), resp.Get("grpc-message")), true
	}
	body, err := readBody(st, true, maxGRPCResponse, nil)
	if err != nil {
		return networkResult(err), false
	}
	tr := st.Trailers()
	status := ""
	if tr != nil {
		status = tr.Get("grpc-status")
	}
	if status != "0" {
		msg := ""
		if tr != nil {
			msg = tr.Get("grpc-message")
		}
		return grpcFailure(status, msg), true
	}
	serving, err := parseHealthResponse(body)
	if err != nil {
		return Result{Outcome: Failure, Detail: err.Error()}, true
	}
	if serving != servingStatusServing {
		return Result{Outcome: Failure, Detail: fmt.Sprintf("serving status %d", serving)}, true
	}
	return Result{Outcome: Success}, true
}

func grpcFailure(status, msg string) Result {
	if status == "" {
		return Result{Outcome: Failure, Detail: "invalid gRPC status"}
	}
	return Result{Outcome: Failure, Detail: "grpc-status " + status + " " + msg}
}

// parseHealthResponse decodes exactly one uncompressed gRPC message holding
// a HealthCheckResponse and returns its status.
func parseHealthResponse(b []byte) (int, error) {
	if len(b) < 5 {
		return 0, errors.New("invalid grpc.health.v1 RPC payload: short frame")
	}
	if b[0] != 0 {
		return 0, errors.New("invalid grpc.health.v1 RPC payload: compressed frame")
	}
	n := binary.BigEndian.Uint32(b[1:5])
	if uint64(len(b)-5) != uint64(n) {
		return 0, errors.New("unexpected streaming or truncated gRPC message")
	}
	msg := b[5:]
	status := 0
	for len(msg) > 0 {
		num, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return 0, errors.New("invalid grpc.health.v1 RPC payload")
		}
		msg = msg[l:]
		if num == 1 && typ == protowire.VarintType {
			v, l := protowire.ConsumeVarint(msg)
			if l < 0 {
				return 0, errors.New("invalid grpc.health.v1 RPC payload")
			}
			status = int(v)
			msg = msg[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(num, typ, msg)
		if l < 0 {
			return 0, errors.New("invalid grpc.health.v1 RPC payload")
		}
		msg = msg[l:]
	}
	return status, nil
}

func (s *grpcSession) close() {}
