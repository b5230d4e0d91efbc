package healthcheck

import (
	"bytes"
	"context"
	"net"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// prober is one kind of checker, shared by a Runner's sessions.
type prober interface {
	// newSession returns the per-host checker state (its connection).
	newSession(addr string) probeSession
	// close releases what the prober shares (an HTTP/2 client).
	close()
}

// probeSession checks one host. check and close run on the session's
// goroutine only.
type probeSession interface {
	// check runs one check; ctx carries the timeout and ends on Stop.
	check(ctx context.Context) Result
	// close drops the session's connection.
	close()
}

func newProber(cfg *Config, dial DialFunc) prober {
	switch cfg.Kind {
	case TCP:
		return &tcpProber{cfg: cfg, dial: dial}
	case GRPC:
		return newGRPCProber(cfg, dial)
	default:
		if cfg.HTTP.HTTP2 {
			return newHTTP2Prober(cfg, dial)
		}
		return &http1Prober{cfg: cfg, dial: dial}
	}
}

// bindConn makes I/O on c honour ctx: its deadline, and cancellation
// (Stop) by moving the deadline into the past. The returned func undoes
// both and reports whether c is still usable.
func bindConn(ctx context.Context, c net.Conn) func() bool {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	return func() bool {
		if !stop() {
			return false
		}
		return c.SetDeadline(time.Time{}) == nil
	}
}

// matchInOrder is Envoy's PayloadMatcher::match: every block is found in
// buf, each after the end of the previous one.
func matchInOrder(blocks [][]byte, buf []byte) bool {
	for _, b := range blocks {
		i := bytes.Index(buf, b)
		if i < 0 {
			return false
		}
		buf = buf[i+len(b):]
	}
	return true
}

// apply applies request_headers_to_remove then _to_add to h, as
// Envoy's HeaderParser::evaluateHeaders does.
func (m *HeaderMutations) apply(h *hhttp.Headers) {
	for _, name := range m.Remove {
		h.Del(name)
	}
	for _, a := range m.Add {
		if a.Value == "" && !a.KeepEmpty {
			continue
		}
		switch a.Action {
		case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
			h.Add(a.Name, a.Value)
		case corev3.HeaderValueOption_ADD_IF_ABSENT:
			h.SetIfAbsent(a.Name, a.Value)
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
			h.Set(a.Name, a.Value)
		case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			if h.Has(a.Name) {
				h.Set(a.Name, a.Value)
			}
		}
	}
}

// networkResult classifies a transport error.
func networkResult(err error) Result {
	return Result{Outcome: NetworkFailure, Detail: err.Error(), err: err}
}
