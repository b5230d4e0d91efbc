// Package filewatch tells whether files on disk changed, for the polled
// file sources (xDS path_config_source, SDS secret files): a move over a
// file changes its identity, a rewrite its size or modification time, and a
// watched_directory's entries are compared too (an atomic symlink swap, as
// Kubernetes does for mounted secrets, shows as a changed entry). Envoy
// watches with inotify; polling needs no new dependency.
//
// It must not import other herald packages.
package filewatch

import (
	"os"
	"path/filepath"
)

// Fingerprint identifies files and a directory's entries at one moment.
type Fingerprint struct {
	files   []os.FileInfo
	entries map[string]os.FileInfo
}

// Of stats files (following symlinks; a missing file is recorded as
// missing) and, when dir is not empty, every entry of dir.
func Of(files []string, dir string) Fingerprint {
	p := Fingerprint{files: make([]os.FileInfo, len(files))}
	for i, f := range files {
		p.files[i], _ = os.Stat(f)
	}
	if dir != "" {
		des, _ := os.ReadDir(dir)
		p.entries = make(map[string]os.FileInfo, len(des))
		for _, de := range des {
			if fi, err := os.Stat(filepath.Join(dir, de.Name())); err == nil {
				p.entries[de.Name()] = fi
			}
		}
	}
	return p
}

// Equal reports whether nothing p and q record differs.
func (p Fingerprint) Equal(q Fingerprint) bool {
	if len(p.files) != len(q.files) || len(p.entries) != len(q.entries) {
		return false
	}
	for i := range p.files {
		if !sameInfo(p.files[i], q.files[i]) {
			return false
		}
	}
	for n, fi := range p.entries {
		if !sameInfo(fi, q.entries[n]) {
			return false
		}
	}
	return true
}

func sameInfo(a, b os.FileInfo) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
