package bootstrap

import (
	"strconv"
	"strings"

	"github.com/herald-proxy/herald/internal/configerr"
)

// Index maps field paths of a loaded config to their positions in the text
// they came from. Paths use the proto field names (the YAML spelling, even
// when the file used the JSON camelCase name), joined by '.'; list elements
// are "[i]", map entries "[key]", and the fields of a message packed in an
// Any continue after the Any's field:
//
//	static_resources.listeners[0].filter_chains[0].filters[0].typed_config.route_config.virtual_hosts[0].routes[0].route.cluster
//
// A field's position is that of its value when the value is a scalar and of
// its key otherwise. An Index is immutable once Parse or Load returns it.
type Index struct {
	file string
	pos  map[string]configerr.Pos
	// lists holds the element count of every list path, for re-basing the
	// paths of --config-yaml after its lists were appended to the file's.
	lists map[string]int
}

var _ configerr.Locator = (*Index)(nil)

func newIndex(file string) *Index {
	return &Index{file: file, pos: map[string]configerr.Pos{}, lists: map[string]int{}}
}

// File returns the name of the text the index was built from: the -c path,
// or "--config-yaml" when there was no file.
func (x *Index) File() string {
	if x == nil {
		return ""
	}
	return x.file
}

// Locate implements configerr.Locator.
func (x *Index) Locate(path string) (configerr.Pos, bool) {
	if x == nil {
		return configerr.Pos{}, false
	}
	p, ok := x.pos[path]
	return p, ok
}

// Len returns the number of paths the index knows.
func (x *Index) Len() int {
	if x == nil {
		return 0
	}
	return len(x.pos)
}

// locate is LocateNearest on x, defaulting to x's file.
func (x *Index) locate(path string) configerr.Pos {
	return configerr.LocateNearest(x, path, x.File())
}

// merged returns the index of base merged with over the way Envoy merges
// --config-yaml into the file (proto MergeFrom): elements of a repeated field
// of over come after base's, so their paths are re-based ("clusters[0]" of
// over becomes "clusters[2]" when base has two clusters); singular fields and
// map entries of over replace base's.
func merged(base, over *Index) *Index {
	out := &Index{file: base.file, pos: make(map[string]configerr.Pos, len(base.pos)+len(over.pos)), lists: make(map[string]int, len(base.lists)+len(over.lists))}
	for p, pos := range base.pos {
		out.pos[p] = pos
	}
	for p, n := range base.lists {
		out.lists[p] = n
	}
	for p, pos := range over.pos {
		out.pos[rebase(p, base, over)] = pos
	}
	for p, n := range over.lists {
		// A list path that rebase left alone is either a list merged with
		// base's (its elements appended) or one inside an element appended
		// to an empty list of base, where base.lists has nothing.
		rp := rebase(p, base, over)
		if rp == p {
			n += base.lists[p]
		}
		out.lists[rp] = n
	}
	return out
}

// rebase rewrites a path of over into the merged message: the first list
// index along the path is shifted by the length of base's list there.
func rebase(path string, base, over *Index) string {
	segs := splitPath(path)
	var b strings.Builder
	prefix := ""
	shifted := false
	for i, s := range segs {
		name, subs := splitSeg(s)
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(name)
		prefix = joinPath(prefix, name)
		for _, sub := range subs {
			_, isList := over.lists[prefix]
			if isList && !shifted {
				if n := base.lists[prefix]; n > 0 {
					if k, err := strconv.Atoi(sub[1 : len(sub)-1]); err == nil {
						sub = "[" + strconv.Itoa(k+n) + "]"
					}
				}
				shifted = true
			}
			b.WriteString(sub)
			prefix += sub
		}
	}
	return b.String()
}

// joinPath appends a field name to a path.
func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// splitPath splits a path at the dots that are outside brackets, so map keys
// with dots ("typed_per_filter_config[envoy.filters.http.buffer]") stay whole.
func splitPath(path string) []string {
	var segs []string
	depth, start := 0, 0
	for i := 0; i < len(path); i++ {
		switch path[i] {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		case '.':
			if depth == 0 {
				segs = append(segs, path[start:i])
				start = i + 1
			}
		}
	}
	return append(segs, path[start:])
}

// splitSeg splits "clusters[0]" into "clusters" and ["[0]"].
func splitSeg(seg string) (string, []string) {
	i := strings.IndexByte(seg, '[')
	if i < 0 {
		return seg, nil
	}
	name, rest := seg[:i], seg[i:]
	var subs []string
	for rest != "" {
		depth, j := 0, 0
		for ; j < len(rest); j++ {
			if rest[j] == '[' {
				depth++
			} else if rest[j] == ']' {
				depth--
				if depth == 0 {
					break
				}
			}
		}
		if j == len(rest) {
			subs = append(subs, rest)
			break
		}
		subs = append(subs, rest[:j+1])
		rest = rest[j+1:]
	}
	return name, subs
}
