package admin

import (
	"io"
	"net"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"

	"github.com/herald-proxy/herald/internal/stats"
)

// Source is what the admin endpoint reads from and acts on; internal/server
// implements it. Every method may be called concurrently from several admin
// requests and must be safe for that. No method is on a request path of the
// proxy, so taking locks is fine.
type Source interface {
	// Stats returns the process-wide stats store (never nil).
	Stats() *stats.Store

	// ServerInfo returns a fresh message the caller may modify: version,
	// hot_restart_version, uptime_current_epoch, uptime_all_epochs,
	// command_line_options and node. The admin overwrites its state with
	// State(), so /ready and /server_info always agree.
	ServerInfo() *adminv3.ServerInfo

	// State returns the server state as Envoy computes it
	// (source/server/utils.cc serverState): PRE_INITIALIZING before the init
	// manager starts, INITIALIZING while it runs, then LIVE, or DRAINING
	// once /healthcheck/fail was called (or the server is draining).
	State() adminv3.ServerInfo_State

	// Listeners returns the active listeners in a stable order (config
	// order, as Envoy's listener manager does).
	Listeners() []ListenerStatus

	// WriteClusters writes the /clusters output: Envoy's text lines
	// ("name::default_priority::max_connections::1024",
	// "name::10.0.0.1:80::health_flags::healthy", ...) when json is false,
	// an adminv3.Clusters as JSON (protojson, proto field names) when true.
	WriteClusters(w io.Writer, json bool) error

	// ConfigDump returns the current configuration: one Any per config
	// tracker key in Envoy's order (BootstrapConfigDump, ClustersConfigDump,
	// ListenersConfigDump, RoutesConfigDump, ScopedRoutesConfigDump,
	// SecretsConfigDump), and an EndpointsConfigDump when includeEDS is set
	// (?include_eds). Resource names in the inner messages are unfiltered and
	// secrets unredacted: the admin applies ?name_regex, ?resource, ?mask
	// and Envoy's redaction of `sensitive` fields itself.
	ConfigDump(includeEDS bool) (*adminv3.ConfigDump, error)

	// Quit starts a graceful shutdown of the server (/quitquitquit) and
	// returns at once. It is called from inside an admin request after the
	// "OK\n" body has been flushed, so it must not wait for the admin
	// endpoint itself to shut down.
	Quit()

	// DrainListeners runs Envoy's /drain_listeners: stop the listeners
	// (inbound only if opts.InboundOnly), after the --drain-time-s drain
	// period when opts.Graceful; with opts.SkipExit the listeners are
	// drained but not stopped. A repeated graceful drain is a no-op. An error
	// becomes a 400 whose body is the error text.
	DrainListeners(opts DrainOptions) error

	// SetHealthcheckFailed sets (true, /healthcheck/fail) or clears (false,
	// /healthcheck/ok) the server-wide failed-health-check flag that the
	// health_check HTTP filter and State() read.
	SetHealthcheckFailed(failed bool)

	// LogLevels returns every logger name with its level, using Envoy's
	// level names (trace, debug, info, warning, error, critical, off).
	LogLevels() map[string]string

	// SetLogLevel sets logger to level, or every logger when logger is "".
	// The admin has already checked that level is one of Envoy's names and
	// that logger is a key of LogLevels(), so an error here is unexpected
	// and becomes a 500.
	SetLogLevel(logger, level string) error

	// ReopenLogs reopens every access log file (/reopen_logs). Failures are
	// logged by the implementation, as Envoy does; the endpoint answers OK.
	ReopenLogs()
}

// ListenerStatus is one active listener: its name and the addresses it is
// bound to, with port 0 already resolved to the port the OS allocated.
// Addrs[0] is Envoy's local_address, the rest are additional_local_addresses.
// Supported address types: *net.TCPAddr, *net.UDPAddr, *net.UnixAddr.
type ListenerStatus struct {
	Name  string
	Addrs []net.Addr
}

// DrainOptions are /drain_listeners' query parameters.
type DrainOptions struct {
	// Graceful (?graceful) enters the drain period before the listeners are
	// stopped.
	Graceful bool
	// InboundOnly (?inboundonly) limits the drain to listeners whose
	// traffic_direction is INBOUND.
	InboundOnly bool
	// SkipExit (?skip_exit) drains but does not stop the listeners.
	SkipExit bool
}
