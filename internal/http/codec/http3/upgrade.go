package http3

import (
	"context"
	nethttp "net/http"
	"time"

	"github.com/quic-go/quic-go"
	quichttp3 "github.com/quic-go/quic-go/http3"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// Extended CONNECT (RFC 9220) and the connection manager's upgrade path.
//
// quic-go's HTTP/3 server always advertises SETTINGS_ENABLE_CONNECT_PROTOCOL
// and hands an extended CONNECT to the handler with :protocol in
// Request.Proto. With http3_protocol_options.allow_extended_connect the
// request is presented as the HTTP/1.1 upgrade the connection manager and
// router understand, as Envoy does for HTTP/2 and HTTP/3
// (source/common/http/utility.cc transformUpgradeRequestFromH2toH1, called
// by the QUIC server stream's codec too): :method becomes GET, and
// "upgrade: <:protocol>" and "connection: upgrade" are added; the upgrade
// response's 101 goes out as 200 (transformUpgradeResponseFromH1toH2).
// Without it the request is an invalid message, as in Envoy
// (EnvoyQuicServerStream::OnInitialHeadersComplete: a :protocol header
// while the session does not allow extended CONNECT is
// Http3ResponseCodeDetailValues::invalid_http_header).
// https://www.envoyproxy.io/docs/envoy/latest/intro/arch_overview/http/upgrades#websocket-and-http-2
// https://www.envoyproxy.io/docs/envoy/latest/api-v3/config/core/v3/protocol.proto#envoy-v3-api-field-config-core-v3-http3protocoloptions-allow-extended-connect

// errCodeMessageError is H3_MESSAGE_ERROR (RFC 9114 §8.1): a malformed
// request.
const errCodeMessageError = quichttp3.ErrCodeMessageError

// transformUpgradeRequestFromH3toH1 rewrites an extended CONNECT's headers
// in place as an HTTP/1.1 upgrade request of type protocol.
func transformUpgradeRequestFromH3toH1(h *hhttp.Headers, protocol string) {
	for i := range h.Fields {
		if h.Fields[i].Name == hhttp.Method {
			h.Fields[i].Value = nethttp.MethodGet
			break
		}
	}
	h.Fields = append(h.Fields,
		hhttp.HeaderField{Name: "upgrade", Value: protocol},
		hhttp.HeaderField{Name: "connection", Value: "upgrade"})
}

// invalidMessage ends a request that is an invalid HTTP message as Envoy's
// EnvoyQuicServerStream::onStreamError does: the connection closes, unless
// override_stream_error_on_invalid_http_message asks for a stream error
// (the stream is reset with H3_MESSAGE_ERROR).
func (a *adapter) invalidMessage(w nethttp.ResponseWriter) {
	if !a.opts.StreamErrorOnInvalidHTTPMessage {
		a.qc.CloseWithError(quic.ApplicationErrorCode(errCodeMessageError), "invalid HTTP header")
		return
	}
	if hs, ok := w.(quichttp3.HTTPStreamer); ok {
		if str, err := hs.HTTPStream(); err == nil {
			str.CancelRead(quic.StreamErrorCode(errCodeMessageError))
			str.CancelWrite(quic.StreamErrorCode(errCodeMessageError))
			return
		}
	}
	panic(nethttp.ErrAbortHandler)
}

// streamDone is called when a request stream's handler returns.
func (a *adapter) streamDone() {
	if a.active.Add(-1) == 0 && a.closing.Load() {
		a.idleOnce.Do(func() { close(a.idle) })
	}
}

// CloseConnWhenIdle implements the connection manager's connCloser: the
// connection sends GOAWAY (new streams are refused) and closes once no
// stream is active. It is Envoy's DrainState::Closing, which the
// connection manager enters after refusing an upgrade
// (ConnectionManagerImpl::checkForDeferredClose); as on HTTP/2, herald
// sends GOAWAY first so that the client knows no stream was lost.
func (s *stream) CloseConnWhenIdle() {
	a := s.a
	a.markClosing()
	a.goAwayOne.Do(func() { close(a.goAway) })
}

// markClosing makes the connection close once no stream is active: idle
// is closed now if none is, else by the last streamDone.
func (a *adapter) markClosing() {
	a.closing.Store(true)
	if a.active.Load() == 0 {
		a.idleOnce.Do(func() { close(a.idle) })
	}
}

// delayedCloseTimeout is how long an idle connection closing after
// CloseConnWhenIdle waits for the client to close it (its last responses
// may still be in flight: closing from here would discard them). Envoy
// closes such a connection with FlushWriteAndDelay, bounded by the HCM's
// delayed_close_timeout, default 1 s
// (https://www.envoyproxy.io/docs/envoy/latest/api-v3/extensions/filters/network/http_connection_manager/v3/http_connection_manager.proto#envoy-v3-api-field-extensions-filters-network-http-connection-manager-v3-httpconnectionmanager-delayed-close-timeout);
// an HTTP/3 client that got GOAWAY closes as soon as its requests are done
// (RFC 9114 §5.2).
const delayedCloseTimeout = time.Second

// closeWhenIdle runs on Serve's drain goroutine: GOAWAY at once, then,
// after delay (the drain timeout of a drain; 0 after CloseConnWhenIdle,
// which already marked the connection closing), the connection closes when
// the last stream is done (or, if drain closes meanwhile, after grace).
func (a *adapter) closeWhenIdle(srv *quichttp3.Server, drain, done <-chan struct{}, grace, delay time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	shut := make(chan struct{})
	go func() {
		// Shutdown sends GOAWAY and refuses new streams; it returns once
		// ctx is cancelled (the connection is then closed below).
		srv.Shutdown(ctx)
		close(shut)
	}()
	wait := true
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
			a.markClosing()
		case <-done:
			wait = false
		}
		t.Stop()
	}
	var timeout <-chan time.Time
	for wait {
		select {
		case <-a.idle:
			// Idle: give the client delayedCloseTimeout to read the last
			// responses and close.
			t := time.NewTimer(delayedCloseTimeout)
			select {
			case <-t.C:
			case <-done:
			case <-a.qc.Context().Done():
			}
			t.Stop()
			wait = false
		case <-done:
			wait = false
		case <-drain:
			t := time.NewTimer(grace)
			defer t.Stop()
			timeout = t.C
			drain = nil
		case <-timeout:
			wait = false
		}
	}
	a.qc.CloseWithError(errCodeNoError, "")
	cancel()
	<-shut
}
