package router

import "sort"

// minBlockRoutes is the shortest run of plain prefix/path routes worth
// indexing; shorter runs are scanned, which is faster for a handful.
const minBlockRoutes = 8

// matchStep is one step of a virtual host's route scan: a single route, or
// an indexed block of consecutive plain routes.
type matchStep struct {
	route *Route
	block *routeBlock
}

// routeBlock indexes a run of consecutive routes whose only condition is a
// case-sensitive prefix or path. First-match-wins is kept: among the block's
// routes that match, the one configured first is returned, and the block is
// consulted at the position of its first route. A request costs one map
// lookup per distinct prefix length instead of one comparison per route.
type routeBlock struct {
	routes     []*Route
	exact      map[string]int // path → first route index
	prefix     map[string]int // prefix → first route index
	prefixLens []int          // distinct prefix lengths, ascending
}

// plain reports whether r matches on a case-sensitive prefix or path alone.
func plain(r *Route) bool {
	m := &r.match
	return (m.kind == pathPrefix || m.kind == pathExact) && m.caseSensitive &&
		len(m.headers) == 0 && len(m.query) == 0 && !m.grpc
}

// compileSteps groups runs of at least minBlockRoutes plain routes.
func compileSteps(routes []*Route) []matchStep {
	var steps []matchStep
	for i := 0; i < len(routes); {
		j := i
		for j < len(routes) && plain(routes[j]) {
			j++
		}
		if j-i >= minBlockRoutes {
			steps = append(steps, matchStep{block: newRouteBlock(routes[i:j])})
			i = j
			continue
		}
		if j == i {
			j = i + 1
		}
		for ; i < j; i++ {
			steps = append(steps, matchStep{route: routes[i]})
		}
	}
	return steps
}

func newRouteBlock(routes []*Route) *routeBlock {
	b := &routeBlock{routes: routes, exact: map[string]int{}, prefix: map[string]int{}}
	lens := map[int]bool{}
	for i, r := range routes {
		m := r.match
		idx := b.exact
		if m.kind == pathPrefix {
			idx = b.prefix
			lens[len(m.value)] = true
		}
		if _, dup := idx[m.value]; !dup {
			idx[m.value] = i
		}
	}
	for l := range lens {
		b.prefixLens = append(b.prefixLens, l)
	}
	sort.Ints(b.prefixLens)
	return b
}

// match returns the first route of the block matching path (without query).
func (b *routeBlock) match(path string) *Route {
	best := -1
	if i, ok := b.exact[path]; ok {
		best = i
	}
	for _, l := range b.prefixLens {
		if l > len(path) {
			break
		}
		if i, ok := b.prefix[path[:l]]; ok && (best < 0 || i < best) {
			best = i
		}
	}
	if best < 0 {
		return nil
	}
	return b.routes[best]
}
