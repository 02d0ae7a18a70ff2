package edge

import (
	"net/http"
	"sort"
)

// fieldList is a stored response's header fields in compact form: a slice
// sorted by canonical name, every value in one shared backing array. It
// costs about half of an http.Header map per stored object, and a hit
// ranges over it faster than over a map.
type fieldList []field

type field struct {
	name   string
	values []string
}

// fieldsOf copies h into a fieldList (the value strings are shared).
func fieldsOf(h http.Header) fieldList {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	all := make([]string, 0, n)
	out := make(fieldList, 0, len(h))
	for k, vs := range h {
		start := len(all)
		all = append(all, vs...)
		out = append(out, field{name: k, values: all[start:len(all):len(all)]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// get returns the first value of the field with canonical name name.
func (f fieldList) get(name string) string {
	for i := range f {
		if f[i].name == name {
			if len(f[i].values) > 0 {
				return f[i].values[0]
			}
			return ""
		}
	}
	return ""
}

// header returns the fields as a new http.Header.
func (f fieldList) header() http.Header {
	h := make(http.Header, len(f))
	for _, fl := range f {
		h[fl.name] = append([]string(nil), fl.values...)
	}
	return h
}
