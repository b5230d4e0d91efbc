// Command herald is an Envoy-compatible proxy: `herald -c envoy.yaml` runs an
// Envoy v3 bootstrap. Flags follow Envoy's command line
// (https://www.envoyproxy.io/docs/envoy/latest/operations/cli).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	_ "github.com/herald-proxy/herald/extensions/all"
	"github.com/herald-proxy/herald/internal/server"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// watchInterval is how often --watch-config polls the config file.
const watchInterval = time.Second

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("herald", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts        server.Options
		drainSecs   uint
		flushMs     uint
		showVersion bool
		watchConfig bool
	)
	fs.StringVar(&opts.ConfigPath, "c", "", "path to an Envoy v3 bootstrap (YAML or JSON); same as --config-path")
	fs.StringVar(&opts.ConfigPath, "config-path", "", "path to an Envoy v3 bootstrap (YAML or JSON)")
	fs.StringVar(&opts.ConfigYAML, "config-yaml", "", "bootstrap YAML merged over --config-path")
	fs.StringVar(&opts.Mode, "mode", "serve", "serve or validate")
	fs.StringVar(&opts.LogLevel, "l", "info", "log level; same as --log-level")
	fs.StringVar(&opts.LogLevel, "log-level", "info", "log level: trace, debug, info, warning, error, critical, off")
	fs.UintVar(&drainSecs, "drain-time-s", 600, "seconds to drain connections on shutdown and of changed or removed listeners on reload")
	fs.IntVar(&opts.Concurrency, "concurrency", 0, "worker threads (GOMAXPROCS); 0 = number of CPUs")
	fs.StringVar(&opts.ServiceCluster, "service-cluster", "", "local service cluster name (node.cluster)")
	fs.StringVar(&opts.ServiceNode, "service-node", "", "local service node name (node.id)")
	fs.StringVar(&opts.ServiceZone, "service-zone", "", "local service zone (node.locality.zone)")
	fs.StringVar(&opts.AdminAddressPath, "admin-address-path", "", "file to write the bound admin address to")
	fs.UintVar(&flushMs, "file-flush-interval-msec", 1000, "access log flush interval in milliseconds")
	fs.BoolVar(&watchConfig, "watch-config", false, "herald: reload --config-path when it changes (polled every second; atomic renames included); SIGHUP always reloads")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: herald -c <envoy.yaml> [options]\n\nherald runs Envoy v3 bootstrap configs. Options (Envoy's command line):\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 1
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "herald: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 1
	}
	if showVersion {
		fmt.Fprintf(stdout, "herald version: %s (Envoy v3 API compatible)\n", version)
		return 0
	}
	if opts.Mode != "serve" && opts.Mode != "validate" {
		fmt.Fprintf(stderr, "herald: --mode must be serve or validate, not %q\n", opts.Mode)
		return 1
	}
	if opts.ConfigPath == "" && opts.ConfigYAML == "" {
		fmt.Fprintln(stderr, "herald: at least one of --config-path or --config-yaml is required")
		fs.Usage()
		return 1
	}
	if watchConfig {
		if opts.ConfigPath == "" {
			fmt.Fprintln(stderr, "herald: --watch-config needs --config-path")
			return 1
		}
		opts.WatchConfig = watchInterval
	}
	opts.DrainTime = time.Duration(drainSecs) * time.Second
	opts.FileFlushInterval = time.Duration(flushMs) * time.Millisecond
	opts.Version = version
	opts.CommandLine = args
	return server.Run(opts, stdout, stderr)
}
