package admin

import (
	"encoding/json"
	nethttp "net/http"
	"time"
)

// ReloadStatus is the outcome of herald's last configuration reload
// (herald-only: Envoy has no static reload). It is the /reload_status body.
type ReloadStatus struct {
	// Time is when the last reload attempt finished; zero when none ran.
	Time time.Time `json:"time,omitzero"`
	// Trigger is what started it: "SIGHUP", "watch" (--watch-config) or
	// "admin" … ("" when none ran).
	Trigger string `json:"trigger,omitempty"`
	// OK is true when the last attempt was applied.
	OK bool `json:"ok"`
	// Error is the rejection, one "file:line:col: path: msg" per line, when
	// !OK. The previous configuration keeps serving.
	Error string `json:"error,omitempty"`
	// Warnings are accepted-but-ignored notes of the last attempt (a
	// changed admin block needs a restart, …).
	Warnings []string `json:"warnings,omitempty"`
	// LastApplied is when the running configuration was applied (start-up
	// or the last successful reload).
	LastApplied time.Time `json:"last_applied"`
	// Applied and Rejected count reloads since start-up.
	Applied  uint64 `json:"applied"`
	Rejected uint64 `json:"rejected"`
}

// Reloader is implemented by a Source that reloads its configuration
// (internal/server). The admin serves /reload_status when the Source
// implements it.
type Reloader interface {
	// ReloadStatus returns the last reload's outcome.
	ReloadStatus() ReloadStatus
}

// serveReloadStatus is herald's /reload_status: the last reload's outcome
// as JSON.
func (a *Admin) serveReloadStatus(w nethttp.ResponseWriter, _ *nethttp.Request) {
	r, ok := a.src.(Reloader)
	if !ok {
		writeText(w, nethttp.StatusNotFound, "configuration reload is not available\n")
		return
	}
	b, err := json.MarshalIndent(r.ReloadStatus(), "", "  ")
	if err != nil {
		writeText(w, nethttp.StatusInternalServerError, err.Error()+"\n")
		return
	}
	writeBody(w, nethttp.StatusOK, contentTypeJSON, append(b, '\n'))
}
