package server

import "time"

// Options are Envoy's command-line options herald accepts
// (https://www.envoyproxy.io/docs/envoy/latest/operations/cli).
type Options struct {
	// ConfigPath is -c/--config-path.
	ConfigPath string
	// ConfigYAML is --config-yaml, merged over the file.
	ConfigYAML string
	// Mode is "serve" (default) or "validate".
	Mode string
	// LogLevel is -l/--log-level: trace, debug, info, warning/warn, error,
	// critical, off. Envoy's default is info.
	LogLevel string
	// DrainTime is --drain-time-s (Envoy default 600 s): herald waits at
	// most this long for connections to finish on shutdown, and for the
	// connections of a changed or removed listener to drain on a reload.
	DrainTime time.Duration
	// Concurrency is --concurrency; 0 means the number of CPUs.
	Concurrency int
	// ServiceCluster, ServiceNode and ServiceZone override node.cluster,
	// node.id and node.locality.zone.
	ServiceCluster string
	ServiceNode    string
	ServiceZone    string
	// AdminAddressPath is --admin-address-path: the bound admin address is
	// written there.
	AdminAddressPath string
	// FileFlushInterval is --file-flush-interval-msec (Envoy default 1 s).
	FileFlushInterval time.Duration
	// WatchConfig is herald's --watch-config: when > 0, -c is polled at this
	// interval and reloaded when it changes (0: reload on SIGHUP only).
	WatchConfig time.Duration
	// Version is herald's version string.
	Version string
	// CommandLine is the raw argument list, for /server_info.
	CommandLine []string
}
