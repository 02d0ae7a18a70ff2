package yamlconf

import "strings"

// Nearest returns the name in known closest to word, for a "did you
// mean" hint: within an edit distance (insertions, deletions,
// substitutions and swaps of two neighbours) of a quarter of word's
// length, at least 1, ignoring case and taking - for _. It returns ""
// when none is that close. Of two as close, the first in known wins.
func Nearest(word string, known []string) string {
	w := fold(word)
	limit := max(1, len(w)/4)
	best, bestD := "", limit+1
	for _, k := range known {
		if d := distance(w, fold(k)); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func fold(s string) string {
	return strings.ReplaceAll(strings.ToLower(s), "-", "_")
}

// distance is the optimal string alignment distance between a and b,
// in bytes (field names are ASCII).
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		// No field name is that long: not worth the quadratic table.
		if a == b {
			return 0
		}
		return max(len(a), len(b))
	}
	// rows[i][j] is the distance between a[:i] and b[:j].
	rows := make([][]int, len(a)+1)
	for i := range rows {
		rows[i] = make([]int, len(b)+1)
		rows[i][0] = i
	}
	for j := range rows[0] {
		rows[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d := min(rows[i-1][j]+1, rows[i][j-1]+1, rows[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d = min(d, rows[i-2][j-2]+1)
			}
			rows[i][j] = d
		}
	}
	return rows[len(a)][len(b)]
}
