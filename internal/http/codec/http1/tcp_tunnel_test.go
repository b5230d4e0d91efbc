package http1

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

// TestClientTCPTunneling: EnableTCPTunneling makes a POST a tunnel as a
// CONNECT is: no framing header, payload held until a 2xx, then raw both
// ways until each side half-closes; a refusal drops the payload.
func TestClientTCPTunneling(t *testing.T) {
	tests := []struct {
		name     string
		status   string // the upstream's status line
		wantHead string // the request head the upstream saw
		wantBody string // what came back as the response body
		wantErr  bool   // the payload write fails (refused)
	}{
		{
			name:     "2xx opens the tunnel",
			status:   "HTTP/1.1 200 OK",
			wantHead: "POST /t HTTP/1.1\r\nhost: h:1\r\n\r\n",
			wantBody: "tunnel",
		},
		{
			// Any 2xx opens an HTTP/1.1 tunnel (Envoy's
			// Http1Upstream::isValidResponse).
			name:     "204 opens the tunnel",
			status:   "HTTP/1.1 204 No Content",
			wantHead: "POST /t HTTP/1.1\r\nhost: h:1\r\n\r\n",
			wantBody: "tunnel",
		},
		{
			name:     "403 refuses it",
			status:   "HTTP/1.1 403 Forbidden\r\ncontent-length: 0",
			wantHead: "POST /t HTTP/1.1\r\nhost: h:1\r\n\r\n",
			wantErr:  true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			seen := make(chan string, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				var head strings.Builder
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					head.WriteString(line)
					if line == "\r\n" {
						break
					}
				}
				seen <- head.String()
				_, _ = io.WriteString(c, tc.status+"\r\n\r\n")
				_, _ = io.Copy(c, br)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			cc := NewClientConn(nc)
			cc.EnableTCPTunneling()
			req := &hhttp.Headers{}
			req.Add(hhttp.Method, "POST")
			req.Add(hhttp.Authority, "h:1")
			req.Add(hhttp.Path, "/t")
			if err := cc.WriteHeaders(req, false); err != nil {
				t.Fatal(err)
			}
			if got := <-seen; got != tc.wantHead {
				t.Errorf("upstream saw %q, want %q", got, tc.wantHead)
			}
			resp := &hhttp.Headers{}
			endStream, err := cc.ReadHeaders(resp)
			if err != nil || endStream != tc.wantErr {
				t.Fatalf("ReadHeaders: endStream %v, %v; want endStream %v", endStream, err, tc.wantErr)
			}
			err = cc.WriteData([]byte("tunnel"), true)
			if tc.wantErr {
				if !errors.Is(err, errUpgradeRefused) {
					t.Fatalf("payload after a refusal: %v, want errUpgradeRefused", err)
				}
				cc.Close(errors.New("refused"))
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, cc); got != tc.wantBody {
				t.Errorf("body = %q, want %q", got, tc.wantBody)
			}
			if cc.Reusable() {
				t.Error("a tunnel connection is reusable")
			}
			cc.Close(nil)
			cc.Reset()
			if cc.tcpTunnel {
				t.Error("Reset kept EnableTCPTunneling for the next request")
			}
		})
	}
}
