package connmgr

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-proxy/herald/internal/http/httpfilter"
)

// watchdog enforces stream_idle_timeout and request_timeout for one stream
// at a time. The stream goroutine arms and disarms it; its timer fires on
// another goroutine. An HTTP/1.1 connection keeps one and re-arms it per
// request (no allocation per request); each HTTP/2 stream gets its own.
type watchdog struct {
	// raw is the downstream connection of an HTTP/1.1 stream: a past read
	// deadline wakes a blocked body read. Immutable.
	raw interface{ SetReadDeadline(time.Time) error }

	// Written by the stream goroutine while armed, read by fire.
	lastActivity atomic.Int64
	reqDone      atomic.Bool
	timedOut     atomic.Int32

	// mu guards the fields below and orders expire against disarm: once
	// disarm returns, no expire of that stream runs or will run.
	mu      sync.Mutex
	armed   bool
	timer   *time.Timer
	idle    time.Duration
	request time.Duration
	// maxDur is the stream's maximum duration from start when hasMaxDur
	// (the route's max_stream_duration or grpc-timeout; duration.go).
	maxDur    time.Duration
	hasMaxDur bool
	start     time.Time
	cancel    context.CancelFunc
	aborter   httpfilter.Aborter
}

// arm starts watching a new stream. The timer is created once and reset
// per stream. A fire that raced with re-arming evaluates the new stream's
// times, finds nothing expired and just re-arms: stale fires are harmless.
func (wd *watchdog) arm(start time.Time, idle, request time.Duration) {
	wd.mu.Lock()
	wd.armed = true
	wd.idle, wd.request, wd.start = idle, request, start
	wd.maxDur, wd.hasMaxDur = 0, false
	wd.cancel, wd.aborter = nil, nil
	wd.lastActivity.Store(start.UnixNano())
	wd.reqDone.Store(false)
	wd.timedOut.Store(noTimeout)
	d := idle
	if request > 0 && (d <= 0 || request < d) {
		d = request
	}
	if wd.timer == nil {
		wd.timer = time.AfterFunc(d, wd.fire)
	} else {
		wd.timer.Reset(d)
	}
	wd.mu.Unlock()
}

// disarm stops watching; safe to call more than once.
func (wd *watchdog) disarm() {
	wd.mu.Lock()
	wd.armed = false
	if wd.timer != nil {
		wd.timer.Stop()
	}
	wd.cancel, wd.aborter = nil, nil
	wd.mu.Unlock()
}

// setIdle changes the idle timeout of the armed stream (0 disables it).
func (wd *watchdog) setIdle(d time.Duration) {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	wd.idle = d
	wd.lastActivity.Store(time.Now().UnixNano())
	if d > 0 {
		wd.timer.Reset(d)
	}
}

func (wd *watchdog) setCancel(c context.CancelFunc) {
	wd.mu.Lock()
	wd.cancel = c
	fired := wd.timedOut.Load() != noTimeout
	wd.mu.Unlock()
	if fired {
		c()
	}
}

func (wd *watchdog) setAborter(a httpfilter.Aborter) {
	wd.mu.Lock()
	wd.aborter = a
	wd.mu.Unlock()
}

// fire runs on the timer goroutine.
func (wd *watchdog) fire() {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if !wd.armed {
		return
	}
	now := time.Now()
	if wd.hasMaxDur && now.Sub(wd.start) >= wd.maxDur {
		wd.expireLocked(durationTimeout)
		return
	}
	if wd.request > 0 && !wd.reqDone.Load() && now.Sub(wd.start) >= wd.request {
		wd.expireLocked(requestTimeout)
		return
	}
	next := time.Duration(0)
	if wd.idle > 0 {
		idle := now.Sub(time.Unix(0, wd.lastActivity.Load()))
		if idle >= wd.idle {
			wd.expireLocked(idleTimeout)
			return
		}
		next = wd.idle - idle
	}
	if wd.request > 0 && !wd.reqDone.Load() {
		if rem := wd.start.Add(wd.request).Sub(now); next == 0 || rem < next {
			next = rem
		}
	}
	if wd.hasMaxDur {
		if rem := wd.start.Add(wd.maxDur).Sub(now); next == 0 || rem < next {
			next = rem
		}
	}
	if next > 0 {
		wd.timer.Reset(next)
	}
}

// setMaxDuration bounds the armed stream's duration to d from its start;
// the timer re-evaluates at once (fire computes the next deadline of all
// the stream's timeouts).
func (wd *watchdog) setMaxDuration(d time.Duration) {
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if !wd.armed {
		return
	}
	wd.maxDur, wd.hasMaxDur = d, true
	wd.timer.Reset(0)
}

// expireLocked marks the stream timed out and wakes its goroutine: the
// context, the registered aborter (the router's upstream connection) and,
// for HTTP/1.1, the downstream read.
func (wd *watchdog) expireLocked(kind int32) {
	if !wd.timedOut.CompareAndSwap(noTimeout, kind) {
		return
	}
	if wd.cancel != nil {
		wd.cancel()
	}
	if wd.aborter != nil {
		wd.aborter.Abort()
	}
	if wd.raw != nil {
		wd.raw.SetReadDeadline(time.Unix(1, 0))
	}
}
