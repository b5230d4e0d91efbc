// Package admin serves Envoy's administration interface (/ready, /stats,
// /stats/prometheus, /clusters, /config_dump, /server_info, /listeners,
// /logging, /healthcheck/fail, /drain_listeners, /quitquitquit, ...) with
// Envoy's paths, query parameters, bodies, status codes and headers, plus
// herald's own read-only /dashboard page and /reload_status (the last
// configuration reload, when the Source implements Reloader). It reads
// from and acts on the running server only through the Source interface,
// which internal/server implements.
//
// Envoy: https://www.envoyproxy.io/docs/envoy/latest/operations/admin
// (handler table and texts: source/server/admin/admin.cc).
//
// It is one of the two places allowed to import net/http (aliased nethttp).
// It must not import internal/server (the dependency goes the other way) nor
// anything under extensions/.
package admin
