package admin

import (
	_ "embed" // dashboard.html
	nethttp "net/http"
)

// dashboardHTML is herald's /dashboard: one self-contained page (no external
// assets) that polls /server_info, /reload_status, /listeners?format=json,
// /clusters?format=json and /stats?format=json every 2 s.
//
//go:embed dashboard.html
var dashboardHTML []byte

func (a *Admin) serveDashboard(w nethttp.ResponseWriter, _ *nethttp.Request) {
	writeBody(w, nethttp.StatusOK, contentTypeHTML, dashboardHTML)
}
