package connmgr

import (
	"testing"

	hhttp "github.com/herald-proxy/herald/internal/http"
)

func TestIsUpgrade(t *testing.T) {
	tests := []struct {
		name   string
		fields [][2]string
		want   bool
	}{
		{name: "websocket", fields: [][2]string{{"connection", "Upgrade"}, {"upgrade", "websocket"}}, want: true},
		{name: "token among others", fields: [][2]string{{"connection", "keep-alive, UPGRADE"}, {"upgrade", "h2c"}}, want: true},
		{name: "second connection field", fields: [][2]string{{"connection", "keep-alive"}, {"connection", "upgrade"}, {"upgrade", "x"}}, want: true},
		{name: "upgrade without connection token", fields: [][2]string{{"connection", "keep-alive"}, {"upgrade", "websocket"}}},
		{name: "connection token without upgrade", fields: [][2]string{{"connection", "upgrade"}}},
		{name: "token is a prefix only", fields: [][2]string{{"connection", "upgrades"}, {"upgrade", "websocket"}}},
		{name: "plain request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &hhttp.Headers{}
			for _, f := range tt.fields {
				h.Add(f[0], f[1])
			}
			if got := isUpgrade(h); got != tt.want {
				t.Errorf("isUpgrade = %v, want %v", got, tt.want)
			}
		})
	}
}
