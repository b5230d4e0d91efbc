package server

import (
	"fmt"
	"log/slog"
	"strings"
)

// Envoy's log levels mapped onto slog levels.
const (
	levelTrace    = slog.Level(-8)
	levelCritical = slog.Level(12)
	levelOff      = slog.Level(100)
)

// ParseLevel parses an Envoy -l/--log-level value; "" is Envoy's default, info.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "trace":
		return levelTrace, nil
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warning", "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	case "critical":
		return levelCritical, nil
	case "off":
		return levelOff, nil
	}
	return 0, fmt.Errorf("invalid log level %q (want trace, debug, info, warning, error, critical or off)", s)
}

// levelName is the Envoy name of a slog level.
func levelName(l slog.Level) string {
	switch {
	case l <= levelTrace:
		return "trace"
	case l <= slog.LevelDebug:
		return "debug"
	case l <= slog.LevelInfo:
		return "info"
	case l <= slog.LevelWarn:
		return "warning"
	case l <= slog.LevelError:
		return "error"
	case l <= levelCritical:
		return "critical"
	}
	return "off"
}
