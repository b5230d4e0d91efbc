package accesslog

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestFileManagerFlushAndShare(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	if err := os.WriteFile(path, []byte("existing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := NewFileManager(time.Hour)
	defer m.Close()

	a, err := m.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Fatalf("Open(%q) twice returned two files; want one shared writer", path)
	}
	a.Write([]byte("one\n"))
	b.Write([]byte("two\n"))
	if got := readFile(t, path); got != "existing\n" {
		t.Fatalf("before Flush the file holds %q; want the lines still buffered", got)
	}
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	// O_APPEND: the existing content is kept.
	if got, want := readFile(t, path), "existing\none\ntwo\n"; got != want {
		t.Errorf("after Flush: %q, want %q", got, want)
	}
}

func TestFileManagerFlushesOnInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "access.log")
		m := NewFileManager(0) // DefaultFlushInterval
		defer m.Close()
		f, err := m.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		f.Write([]byte("line\n"))
		time.Sleep(DefaultFlushInterval / 2)
		synctest.Wait()
		if got := readFile(t, path); got != "" {
			t.Fatalf("flushed after half an interval: %q", got)
		}
		time.Sleep(DefaultFlushInterval / 2)
		synctest.Wait()
		if got := readFile(t, path); got != "line\n" {
			t.Errorf("after one interval: %q, want %q", got, "line\n")
		}
	})
}

func TestFileManagerFlushesPastThreshold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "access.log")
		m := NewFileManager(time.Hour)
		defer m.Close()
		f, err := m.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		line := bytes.Repeat([]byte("x"), 1023)
		line = append(line, '\n')
		for range flushThreshold / len(line) {
			f.Write(line)
		}
		synctest.Wait()
		if got := len(readFile(t, path)); got != flushThreshold {
			t.Errorf("after writing 64 KiB the file holds %d bytes, want %d", got, flushThreshold)
		}
	})
}

func TestFileManagerReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "access.log")
	rotated := filepath.Join(dir, "access.log.1")
	m := NewFileManager(time.Hour)
	defer m.Close()
	f, err := m.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("before\n"))
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("buffered\n"))
	// Reopen flushes to the old file first, then opens a new one.
	if err := m.Reopen(); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("after\n"))
	if err := m.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, want := readFile(t, rotated), "before\nbuffered\n"; got != want {
		t.Errorf("rotated file: %q, want %q", got, want)
	}
	if got, want := readFile(t, path), "after\n"; got != want {
		t.Errorf("new file: %q, want %q", got, want)
	}
}

func TestFileManagerClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	m := NewFileManager(time.Hour)
	f, err := m.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("last\n"))
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, path); got != "last\n" {
		t.Errorf("Close did not flush: %q", got)
	}
	f.Write([]byte("dropped\n"))
	if _, err := m.Open(path); err == nil {
		t.Error("Open after Close succeeded")
	}
	if err := m.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if got := readFile(t, path); got != "last\n" {
		t.Errorf("write after Close reached the file: %q", got)
	}
}

func TestFileManagerStdStreams(t *testing.T) {
	m := NewFileManager(time.Hour)
	defer m.Close()
	for _, p := range []string{StdoutPath, StderrPath} {
		f, err := m.Open(p)
		if err != nil {
			t.Fatalf("Open(%s): %v", p, err)
		}
		want := os.Stdout
		if p == StderrPath {
			want = os.Stderr
		}
		if f.out != want || !f.std {
			t.Errorf("Open(%s) does not write to the process's stream", p)
		}
	}
	// Reopen leaves the process's streams alone.
	if err := m.Reopen(); err != nil {
		t.Fatal(err)
	}
}

func TestFileManagerOpenError(t *testing.T) {
	m := NewFileManager(time.Hour)
	defer m.Close()
	_, err := m.Open(filepath.Join(t.TempDir(), "no", "such", "dir", "log"))
	if err == nil || !strings.Contains(err.Error(), "accesslog: open ") {
		t.Errorf("Open in a missing directory: %v, want an open error", err)
	}
}

func TestFileManagerConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "access.log")
	// A short interval so flushes race with writers (run with -race).
	m := NewFileManager(time.Millisecond)
	f, err := m.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	l := NewFileLogger(MustNewFormatter(DefaultFormat), f)
	const writers, lines = 8, 500
	var wg sync.WaitGroup
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			info := typicalInfo()
			for range lines {
				l.Log(info)
			}
		}()
	}
	wg.Wait()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	got := readFile(t, path)
	if n := strings.Count(got, "\n"); n != writers*lines {
		t.Errorf("file has %d lines, want %d", n, writers*lines)
	}
	first, _, _ := strings.Cut(got, "\n")
	for _, line := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
		if line != first {
			t.Fatalf("interleaved line %q", line)
		}
	}
}
