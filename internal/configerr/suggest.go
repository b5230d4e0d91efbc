package configerr

import "strings"

// Suggest returns the candidate closest to word by edit distance, compared
// case-insensitively, or "" when none is close enough to be a likely typo:
// at most one edit for words of up to five characters, otherwise at most a
// third of the word's length, and always fewer edits than the word has
// letters (so "b" suggests nothing rather than "a"). Ties go to the earliest candidate, so callers
// pass candidates in a stable order (declaration order of the proto fields).
func Suggest(word string, candidates []string) string {
	w := strings.ToLower(word)
	limit := max(len(w)/3, 1)
	limit = min(limit, len(w)-1)
	if limit < 1 {
		return ""
	}
	best, bestDist := "", limit+1
	for _, c := range candidates {
		if c == word {
			continue
		}
		lc := strings.ToLower(c)
		// A length difference alone above the limit rules the candidate out
		// without computing the distance.
		if d := len(lc) - len(w); d > limit || -d > limit {
			continue
		}
		if d := distance(w, lc, bestDist); d < bestDist {
			best, bestDist = c, d
		}
	}
	return best
}

// distance is the Damerau–Levenshtein (optimal string alignment) distance of
// a and b, so a swap of two neighbouring letters counts as one edit. It gives
// up and returns max once every cell of a row reaches max.
func distance(a, b string, max int) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			v := min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				v = min(v, prev2[j-2]+1)
			}
			cur[j] = v
			rowMin = min(rowMin, v)
		}
		if rowMin >= max {
			return max
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
