package admin

import (
	"context"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	nethttp "net/http"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// Content types and header values of Envoy's admin responses
// (source/server/admin/utils.cc populateFallbackResponseHeaders and
// source/common/http/headers.h ContentTypeValues).
const (
	contentTypeText       = "text/plain; charset=UTF-8"
	contentTypeJSON       = "application/json"
	contentTypeHTML       = "text/html; charset=UTF-8"
	contentTypePrometheus = "text/plain; version=0.0.4; charset=utf-8" // Prometheus text exposition 0.0.4
	cacheControlNoCache   = "no-cache, max-age=0"
	nosniff               = "nosniff"
)

// Options configure an Admin. The zero value is usable.
type Options struct {
	// AccessLog, when set, is called once per admin request after the
	// response is written, with the request method, the path with its query
	// string (Envoy's %REQ(:PATH)%) and the response status. internal/server
	// hooks bootstrap admin.access_log here. Default: nil, no access log.
	AccessLog func(method, path string, status int)

	// ProfilePath is where /cpuprofiler and /heapprofiler write their
	// profiles: bootstrap admin.profile_path. Default DefaultProfilePath.
	ProfilePath string

	// Logger receives the admin's own log lines (a mutating path called
	// without POST, write errors). Default: slog.Default().
	Logger *slog.Logger
}

// Admin is the admin endpoint. Create it with New, start it with Serve, stop
// it with Shutdown. It is also a nethttp.Handler, for tests and embedding.
//
// Immutable after New: src, opts, handlers, helpText, homeHTML.
type Admin struct {
	src      Source
	opts     Options
	log      *slog.Logger
	handlers map[string]*handler // by exact path, as Envoy's AdminImpl::makeRequest
	helpText string              // "admin commands are:\n..." built once
	homeHTML string              // "/" page built once
	srv      *nethttp.Server
	prof     profiler
}

var _ nethttp.Handler = (*Admin)(nil)

// handler is one admin path, Envoy's AdminImpl::UrlHandler.
type handler struct {
	path    string
	help    string
	mutates bool // POST required (Envoy's mutates_server_state)
	params  []param
	serve   func(a *Admin, w nethttp.ResponseWriter, r *nethttp.Request)
}

// param documents one query parameter in /help, Envoy's Admin::ParamDescriptor.
type param struct {
	id      string
	help    string
	choices []string // non-nil for Envoy's Enum parameters
}

// logLevels are spdlog's level names in order, which Envoy's /logging accepts.
var logLevels = []string{"trace", "debug", "info", "warning", "error", "critical", "off"}

// New returns an admin endpoint reading from src.
func New(src Source, opts Options) *Admin {
	a := &Admin{src: src, opts: opts, log: opts.Logger}
	if a.log == nil {
		a.log = slog.Default()
	}
	a.log = a.log.With("component", "admin")

	// Texts and parameters as Envoy's AdminImpl constructor
	// (source/server/admin/admin.cc), restricted to what herald implements.
	table := []*handler{
		{path: "/", help: "Admin home page", serve: (*Admin).serveHome},
		{path: "/certs", help: "print certs on machine", serve: (*Admin).serveCerts},
		{path: "/clusters", help: "upstream cluster status", serve: (*Admin).serveClusters,
			params: []param{{id: "format", help: "File format to use", choices: []string{"text", "json"}}}},
		{path: "/config_dump", help: "dump current Envoy configs (experimental)", serve: (*Admin).serveConfigDump,
			params: []param{
				{id: "resource", help: "The resource to dump"},
				{id: "mask", help: "The mask to apply. When both resource and mask are specified, the mask is applied to every element in the desired repeated field so that only a subset of fields are returned. The mask is parsed as a ProtobufWkt::FieldMask"},
				{id: "name_regex", help: "Dump only the currently loaded configurations whose names match the specified regex. Can be used with both resource and mask query parameters."},
				{id: "include_eds", help: "Dump currently loaded configuration including EDS. See the response definition for more information"},
			}},
		{path: "/cpuprofiler", help: "enable/disable the CPU profiler", mutates: true, serve: (*Admin).serveCPUProfiler,
			params: []param{{id: "enable", help: "enables the CPU profiler", choices: []string{"y", "n"}}}},
		{path: "/dashboard", help: "herald dashboard: server state, listeners, clusters and live stats", serve: (*Admin).serveDashboard},
		{path: "/drain_listeners", help: "drain listeners", mutates: true, serve: (*Admin).serveDrainListeners,
			params: []param{
				{id: "graceful", help: "When draining listeners, enter a graceful drain period prior to closing listeners. This behaviour and duration is configurable via server options or CLI"},
				{id: "skip_exit", help: "When draining listeners, do not exit after the drain period. This must be used with graceful"},
				{id: "inboundonly", help: "Drains all inbound listeners. traffic_direction field in envoy_v3_api_msg_config.listener.v3.Listener is used to determine whether a listener is inbound or outbound."},
			}},
		{path: "/healthcheck/fail", help: "cause the server to fail health checks", mutates: true, serve: (*Admin).serveHealthcheckFail},
		{path: "/healthcheck/ok", help: "cause the server to pass health checks", mutates: true, serve: (*Admin).serveHealthcheckOK},
		{path: "/heap_dump", help: "dump current Envoy heap (if supported)", serve: (*Admin).serveHeapDump},
		{path: "/heapprofiler", help: "enable/disable the heap profiler", mutates: true, serve: (*Admin).serveHeapProfiler,
			params: []param{{id: "enable", help: "enable/disable the heap profiler", choices: []string{"y", "n"}}}},
		{path: "/help", help: "print out list of admin commands", serve: (*Admin).serveHelp},
		{path: "/listeners", help: "print listener info", serve: (*Admin).serveListeners,
			params: []param{{id: "format", help: "File format to use", choices: []string{"text", "json"}}}},
		{path: "/logging", help: "query/change logging levels", mutates: true, serve: (*Admin).serveLogging,
			params: []param{
				{id: "paths", help: "Change multiple logging levels by setting to <logger_name1>:<desired_level1>,<logger_name2>:<desired_level2>."},
				{id: "level", help: "desired logging level, this will change all loggers's level", choices: append([]string{""}, logLevels...)},
			}},
		{path: "/memory", help: "print current allocation/heap usage", serve: (*Admin).serveMemory},
		{path: "/quitquitquit", help: "exit the server", mutates: true, serve: (*Admin).serveQuit},
		{path: "/ready", help: "print server state, return 200 if LIVE, otherwise return 503", serve: (*Admin).serveReady},
		{path: "/reload_status", help: "herald: the last configuration reload (SIGHUP, --watch-config): time, ok or the loader's errors", serve: (*Admin).serveReloadStatus},
		{path: "/reopen_logs", help: "reopen access logs", mutates: true, serve: (*Admin).serveReopenLogs},
		{path: "/runtime", help: "print runtime values", serve: (*Admin).serveRuntime},
		{path: "/server_info", help: "print server version/status information", serve: (*Admin).serveServerInfo},
		{path: "/stats", help: "print server stats", serve: (*Admin).serveStats,
			params: []param{
				{id: "usedonly", help: "Only include stats that have been written by system since restart"},
				{id: "filter", help: "Regular expression (Google re2) for filtering stats"},
				{id: "format", help: "Format to use", choices: []string{"text", "json", "prometheus"}},
				{id: "type", help: "Stat types to include.", choices: statTypes},
			}},
		{path: "/stats/prometheus", help: "print server stats in prometheus format", serve: (*Admin).servePrometheus,
			params: []param{
				{id: "usedonly", help: "Only include stats that have been written by system since restart"},
				{id: "filter", help: "Regular expression (Google re2) for filtering stats"},
			}},
	}
	a.handlers = make(map[string]*handler, len(table))
	for _, h := range table {
		if a.handlers[h.path] != nil {
			panic("admin: duplicate handler " + h.path)
		}
		a.handlers[h.path] = h
	}
	slices.SortFunc(table, func(x, y *handler) int { return strings.Compare(x.path, y.path) })
	a.helpText = buildHelp(table)
	a.homeHTML = buildHome(table)

	a.srv = &nethttp.Server{
		Handler:           a,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
	return a
}

// Serve accepts admin connections on ln until Shutdown. It returns nil after
// Shutdown, any other accept error otherwise. It takes ownership of ln.
func (a *Admin) Serve(ln net.Listener) error {
	if err := a.srv.Serve(ln); !errors.Is(err, nethttp.ErrServerClosed) {
		return fmt.Errorf("admin: %w", err)
	}
	return nil
}

// Shutdown stops accepting, waits for in-flight admin requests until ctx is
// done, then closes every admin connection.
func (a *Admin) Shutdown(ctx context.Context) error {
	err := a.srv.Shutdown(ctx)
	if err != nil {
		_ = a.srv.Close()
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	return nil
}

// ServeHTTP implements nethttp.Handler: Envoy's AdminImpl::makeRequest
// dispatch (exact path match, POST check for mutating paths, 404 with the
// help text) plus populateFallbackResponseHeaders.
func (a *Admin) ServeHTTP(w nethttp.ResponseWriter, r *nethttp.Request) {
	rec := &recorder{ResponseWriter: w, status: nethttp.StatusOK}
	hdr := w.Header()
	hdr.Set("Content-Type", contentTypeText)
	hdr.Set("Cache-Control", cacheControlNoCache)
	hdr.Set("X-Content-Type-Options", nosniff)

	h := a.handlers[r.URL.Path]
	switch {
	case h == nil:
		// Envoy: "invalid path. " followed by the help text, 404.
		writeText(rec, nethttp.StatusNotFound, "invalid path. "+a.helpText)
	case h.mutates && r.Method != nethttp.MethodPost:
		a.log.Error("admin path mutates state, method is not POST", "path", h.path, "method", r.Method)
		writeText(rec, nethttp.StatusMethodNotAllowed, "Method "+r.Method+" not allowed, POST required.")
	default:
		h.serve(a, rec, r)
	}
	if a.opts.AccessLog != nil {
		a.opts.AccessLog(r.Method, r.URL.RequestURI(), rec.status)
	}
}

// recorder remembers the status for the access log hook.
type recorder struct {
	nethttp.ResponseWriter
	status      int
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	return r.ResponseWriter.Write(b)
}

// Flush implements nethttp.Flusher.
func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(nethttp.Flusher); ok {
		f.Flush()
	}
}

// writeText answers status with a text/plain body.
func writeText(w nethttp.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", contentTypeText)
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// writeBody answers status with body of the given content type.
func writeBody(w nethttp.ResponseWriter, status int, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Marshal options matching Envoy's MessageUtil::getJsonStringFromMessage:
// proto field names, pretty-printed; jsonAll also prints default-valued
// primitive fields and empty lists (always_print_primitive_fields = true).
var (
	jsonPretty = protojson.MarshalOptions{Multiline: true, Indent: " ", UseProtoNames: true}
	jsonAll    = protojson.MarshalOptions{Multiline: true, Indent: " ", UseProtoNames: true, EmitDefaultValues: true}
)

// writeProto answers 200 with m as JSON, or 500 if m cannot be marshalled
// (an Any of a type not linked into the binary).
func (a *Admin) writeProto(w nethttp.ResponseWriter, opts protojson.MarshalOptions, m proto.Message) {
	b, err := opts.Marshal(m)
	if err != nil {
		a.log.Error("admin: marshal json", "error", err)
		writeText(w, nethttp.StatusInternalServerError, "admin: marshal json: "+err.Error()+"\n")
		return
	}
	b = append(b, '\n')
	writeBody(w, nethttp.StatusOK, contentTypeJSON, b)
}

// buildHelp renders Envoy's AdminImpl::getHelp.
func buildHelp(sorted []*handler) string {
	var b strings.Builder
	b.WriteString("admin commands are:\n")
	for _, h := range sorted {
		method := ""
		if h.mutates {
			method = " (POST)"
		}
		fmt.Fprintf(&b, "  %s%s: %s\n", h.path, method, h.help)
		for _, p := range h.params {
			fmt.Fprintf(&b, "      %s: %s", p.id, p.help)
			if p.choices != nil {
				b.WriteString("; One of (" + strings.Join(p.choices, ", ") + ")")
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// buildHome renders the "/" page: every path with its help text, a link
// for reads and a POST button for mutations (Envoy's admin home page shape,
// without external assets).
func buildHome(sorted []*handler) string {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>herald admin</title>` +
		`<style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse}` +
		`td{padding:.3em 1em;border-bottom:1px solid #eee;vertical-align:top}form{margin:0}` +
		`button{font:inherit;cursor:pointer}</style></head><body><h1>herald admin</h1>` +
		`<p><a href="/dashboard">dashboard</a></p><table>`)
	for _, h := range sorted {
		if h.path == "/" {
			continue
		}
		p := html.EscapeString(h.path)
		if h.mutates {
			fmt.Fprintf(&b, `<tr><td><form action="%s" method="post"><button type="submit">%s</button></form></td>`, p, p)
		} else {
			fmt.Fprintf(&b, `<tr><td><a href="%s">%s</a></td>`, p, p)
		}
		fmt.Fprintf(&b, "<td>%s</td></tr>\n", html.EscapeString(h.help))
	}
	b.WriteString("</table></body></html>\n")
	return b.String()
}

func (a *Admin) serveHelp(w nethttp.ResponseWriter, _ *nethttp.Request) {
	writeText(w, nethttp.StatusOK, a.helpText)
}

func (a *Admin) serveHome(w nethttp.ResponseWriter, _ *nethttp.Request) {
	writeBody(w, nethttp.StatusOK, contentTypeHTML, []byte(a.homeHTML))
}
