package yamlconf

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Kind is one kind of config file that Detect tells from the others.
type Kind struct {
	// Name names the kind in messages: "edge config".
	Name string
	// Of is a value of the kind's Go type (a struct); its fields are the
	// kind's top-level fields.
	Of any
	// Marker is the top-level field that every file of the kind has:
	// "sites".
	Marker string
}

// Detect tells which of kinds the config in data is, by its top-level
// fields, and says why in a phrase ("it has sites:"). A file is of a kind
// when it has the kind's marker, or a misspelling of it ("site:",
// "Sites:": then decoding it as that kind names the misspelling), and
// when two kinds qualify, the one whose marker is its own (not a field of
// the other) and whose other fields are there wins. With none, the error
// names each kind's marker.
func Detect(data []byte, kinds ...Kind) (Kind, string, error) {
	root, err := parse(data)
	if err != nil {
		return Kind{}, "", err
	}
	if root == nil {
		return Kind{}, "", errors.New("empty file")
	}
	for root.Kind == yaml.AliasNode && root.Alias != nil {
		root = root.Alias
	}
	if root.Kind != yaml.MappingNode {
		return Kind{}, "", &Error{Problems: []Problem{{Line: root.Line, Msg: "want a mapping of fields at the top level, not " + describe(root)}}}
	}
	var keys []string
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind == yaml.ScalarNode {
			keys = append(keys, k.Value)
		}
	}
	top := make([][]string, len(kinds))
	for i, k := range kinds {
		list, _ := fields(reflect.TypeOf(k.Of))
		top[i] = names(list)
	}
	// own reports whether name is a field of kind i and of no other.
	own := func(i int, name string) bool {
		if !slices.Contains(top[i], name) {
			return false
		}
		for j := range kinds {
			if j != i && slices.Contains(top[j], name) {
				return false
			}
		}
		return true
	}
	// misspells returns whether a key, a field of no kind, is close to
	// marker.
	misspells := func(marker string) func(string) bool {
		return func(key string) bool {
			for _, t := range top {
				if slices.Contains(t, key) {
					return false
				}
			}
			return Nearest(key, []string{marker}) != ""
		}
	}
	best, bestScore, why := -1, 0, ""
	for i, k := range kinds {
		score, reason := 0, ""
		switch {
		case slices.Contains(keys, k.Marker) && own(i, k.Marker):
			score, reason = 4, "it has "+k.Marker+":"
		case slices.ContainsFunc(keys, misspells(k.Marker)):
			near := keys[slices.IndexFunc(keys, misspells(k.Marker))]
			score, reason = 3, fmt.Sprintf("it has %s:, close to %s:", near, k.Marker)
		case slices.Contains(keys, k.Marker):
			var absent []string
			for j, o := range kinds {
				if j != i && slices.Contains(top[j], k.Marker) {
					absent = append(absent, o.Marker+":")
				}
			}
			score, reason = 2, "it has "+k.Marker+": and no "+strings.Join(absent, " nor ")
		default:
			continue
		}
		for _, key := range keys {
			if key != k.Marker && own(i, key) {
				score++
			}
		}
		if score > bestScore {
			best, bestScore, why = i, score, reason
		}
	}
	if best < 0 {
		var not []string
		for _, k := range kinds {
			not = append(not, fmt.Sprintf("%s %s (no %s:)", article(k.Name), k.Name, k.Marker))
		}
		return Kind{}, "", errors.New("neither " + strings.Join(not, " nor "))
	}
	return kinds[best], why, nil
}

// article is "a" or "an" before name.
func article(name string) string {
	if name != "" && strings.ContainsRune("aeiouAEIOU", rune(name[0])) {
		return "an"
	}
	return "a"
}
