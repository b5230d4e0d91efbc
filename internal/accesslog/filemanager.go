package accesslog

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// DefaultFlushInterval is how often buffered log lines are written, Envoy's
// --file-flush-interval-msec default (1000 ms).
const DefaultFlushInterval = time.Second

// flushThreshold wakes the flusher early once a file buffers this much,
// Envoy's AccessLogFileImpl min_flush_size (64 KiB).
const flushThreshold = 64 << 10

// Paths that write to the process's own streams instead of opening a file.
const (
	StdoutPath = "/dev/stdout"
	StderrPath = "/dev/stderr"
)

// FileManager owns every access log file of the process: one File per path,
// shared by all loggers of all snapshots, opened once and closed by Close.
// Writes go to a memory buffer; one background goroutine writes buffers out
// every flush interval and as soon as a buffer passes 64 KiB (Envoy's
// AccessLogManager and AccessLogFileImpl).
type FileManager struct {
	// Immutable after NewFileManager:
	interval time.Duration
	kick     chan struct{} // a file passed the threshold; buffered 1
	stop     chan struct{}
	done     chan struct{}

	mu     sync.Mutex // guards files, closed
	files  map[string]*File
	closed bool
}

// NewFileManager starts a manager whose goroutine flushes every interval
// (DefaultFlushInterval when interval <= 0). Close stops it.
func NewFileManager(interval time.Duration) *FileManager {
	if interval <= 0 {
		interval = DefaultFlushInterval
	}
	m := &FileManager{
		interval: interval,
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
		files:    map[string]*File{},
	}
	go m.run()
	return m
}

func (m *FileManager) run() {
	defer close(m.done)
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		case <-m.kick:
		}
		if err := m.Flush(); err != nil {
			slog.Error("access log write failed", "err", err)
		}
	}
}

// Open returns the File for path, opening it (O_APPEND|O_CREATE) the first
// time. StdoutPath and StderrPath write to the process's stdout and stderr.
func (m *FileManager) Open(path string) (*File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errors.New("accesslog: file manager is closed")
	}
	if f, ok := m.files[path]; ok {
		return f, nil
	}
	f := &File{path: path, mgr: m}
	switch path {
	case StdoutPath:
		f.out, f.std = os.Stdout, true
	case StderrPath:
		f.out, f.std = os.Stderr, true
	default:
		out, err := openLogFile(path)
		if err != nil {
			return nil, err
		}
		f.out = out
	}
	m.files[path] = f
	return f, nil
}

func openLogFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	return f, nil
}

func (m *FileManager) snapshot() []*File {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*File, 0, len(m.files))
	for _, f := range m.files {
		out = append(out, f)
	}
	return out
}

// Flush writes every buffered line now.
func (m *FileManager) Flush() error {
	var errs []error
	for _, f := range m.snapshot() {
		if err := f.flush(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Reopen flushes and reopens every file, for log rotation (admin
// /reopen_logs). stdout and stderr are left alone.
func (m *FileManager) Reopen() error {
	var errs []error
	for _, f := range m.snapshot() {
		if err := f.reopen(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close stops the flusher, writes what is buffered and closes the files.
// Lines logged afterwards are dropped.
func (m *FileManager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	close(m.stop)
	<-m.done
	var errs []error
	for _, f := range m.snapshot() {
		if err := f.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// File is one buffered log file shared by every logger writing to its path.
type File struct {
	// Immutable after Open:
	path string
	mgr  *FileManager
	std  bool // stdout or stderr: never reopened nor closed

	mu     sync.Mutex // guards buf, closed; held only to append
	buf    []byte
	closed bool

	wmu   sync.Mutex // guards out, spare; serializes writes, reopen, close
	out   *os.File
	spare []byte
}

// Path returns the path the file was opened with.
func (f *File) Path() string { return f.path }

// Write buffers p (one or more whole lines); it never blocks on I/O.
func (f *File) Write(p []byte) {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.buf = append(f.buf, p...)
	full := len(f.buf) >= flushThreshold
	f.mu.Unlock()
	if full {
		select {
		case f.mgr.kick <- struct{}{}:
		default:
		}
	}
}

// flush swaps the buffer out and writes it; writers keep appending to the
// other buffer meanwhile.
func (f *File) flush() error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	return f.flushLocked()
}

func (f *File) flushLocked() error {
	f.mu.Lock()
	data := f.buf
	if len(data) == 0 {
		f.mu.Unlock()
		return nil
	}
	f.buf = f.spare[:0]
	f.mu.Unlock()
	var err error
	if f.out != nil {
		_, err = f.out.Write(data)
	}
	if cap(data) <= 4*flushThreshold {
		f.spare = data[:0]
	} else {
		// Let a buffer grown by a burst go.
		f.spare = nil
	}
	if err != nil {
		return fmt.Errorf("accesslog: write %s: %w", f.path, err)
	}
	return nil
}

func (f *File) reopen() error {
	f.wmu.Lock()
	defer f.wmu.Unlock()
	err := f.flushLocked()
	if f.std {
		return err
	}
	out, oerr := openLogFile(f.path)
	if oerr != nil {
		// Keep writing to the old descriptor, as Envoy does when reopen fails.
		return errors.Join(err, oerr)
	}
	if f.out != nil {
		_ = f.out.Close()
	}
	f.out = out
	return err
}

func (f *File) close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wmu.Lock()
	defer f.wmu.Unlock()
	err := f.flushLocked()
	if !f.std && f.out != nil {
		err = errors.Join(err, f.out.Close())
		f.out = nil
	}
	return err
}
