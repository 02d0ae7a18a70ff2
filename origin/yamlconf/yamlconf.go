// Package yamlconf decodes Meridian's YAML config files (an edge node's,
// the geo service's) into their Go structs, strictly and with errors that
// an operator can act on. Every error names its line and the field's path
// as the config is written, with the format the field wants, never a Go
// type:
//
//	line 7: sites[0].cache_kye: unknown field; did you mean cache_key?
//	line 9: sites[0].timeout: "5 seconds" is not a duration (want e.g. 500ms, 30s, 5m, 2h, 1d)
//
// Durations (time.Duration fields) take Go's units and d for days
// ("7d", "1d12h"); byte counts (integer fields named bytes or *_bytes)
// take a size with a unit ("256MiB", "1GB", "64k") or a plain number, as
// [ParseSize] reads it. The structs stay plain (int64 and time.Duration
// fields, yaml tags): the units are read here, not by their types.
// Detect tells which kind of config a file is.
//
// It lives under origin/ because both config readers import it, the
// edge's (edge, edge/node) and the geo service's (geo), and origin/ is
// the one part of the serving code that both may depend on: geo may not
// import edge, edge/node may not import geo, ring is a pure placement
// leaf, and internal/ holds test harnesses only. The edge already
// depends on origin (its sites embed origin.PoolConfig). It imports
// nothing of the module.
package yamlconf

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Problem is one thing wrong in a config file.
type Problem struct {
	// Line is the line of the file it is on, from 1; 0 when not known.
	Line int
	// Path is the field, as the config writes it ("sites[0].cache_key");
	// "" for the top level.
	Path string
	// Msg says what is wrong and what is wanted.
	Msg string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Path != "" {
		b.WriteString(p.Path + ": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Error is what Decode returns for a file that does not decode: every
// problem found, in file order (up to a bound).
type Error struct {
	Problems []Problem
	// More counts the problems past the bound, not listed.
	More int
}

// maxProblems bounds the problems an Error lists.
const maxProblems = 10

func (e *Error) Error() string {
	if len(e.Problems) == 1 && e.More == 0 {
		return e.Problems[0].String()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems:", len(e.Problems)+e.More)
	for _, p := range e.Problems {
		b.WriteString("\n  " + p.String())
	}
	if e.More > 0 {
		fmt.Fprintf(&b, "\n  and %d more", e.More)
	}
	return b.String()
}

// Decode decodes the one YAML document in data into v, a pointer to a
// struct, as yaml.v3 would (tags, ",inline", anchors and aliases, merge
// keys "<<", custom yaml.Unmarshaler types), except that:
//   - a field the struct does not have is an error, with the nearest
//     known field name as a hint;
//   - a value of the wrong form is an error that says the form wanted
//     ("a whole number", "true or false", "a list", a duration, a size);
//   - durations take d for days, and byte counts take units (see the
//     package doc);
//   - a key given twice in one mapping, and a second document, are
//     errors.
//
// An empty document leaves v as it is. When it returns an error, v is
// unchanged too; the error is an *Error, or a YAML syntax error with its
// line.
func Decode(data []byte, v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		return errors.New("yamlconf: Decode needs a non-nil pointer")
	}
	root, err := parse(data)
	if err != nil || root == nil {
		return err
	}
	d := &decoder{budget: 100000 + 100*len(data)}
	tmp := reflect.New(rv.Elem().Type()).Elem()
	tmp.Set(rv.Elem())
	d.value(root, tmp, "", false)
	if len(d.problems) > 0 {
		return &Error{Problems: d.problems, More: d.more}
	}
	rv.Elem().Set(tmp)
	return nil
}

// parse returns the root of the one document in data; nil when there is
// none.
func parse(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, syntaxError(err)
		}
		return nil, &Error{Problems: []Problem{{Line: extra.Line, Msg: "a second YAML document (after ---): a config file holds one"}}}
	}
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		return doc.Content[0], nil
	}
	return &doc, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError words a yaml.v3 parse error as a Problem.
func syntaxError(err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Problems: []Problem{{Line: line, Msg: "not valid YAML: " + m[2]}}}
	}
	return &Error{Problems: []Problem{{Msg: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: ")}}}
}

// decoder walks a node tree and the Go value it fills together.
type decoder struct {
	problems []Problem
	more     int
	// budget bounds the nodes visited, aliases expanded: a few aliases
	// of aliases can name billions of nodes.
	budget int
}

var (
	durationType    = reflect.TypeFor[time.Duration]()
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	textType        = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	if len(d.problems) >= maxProblems {
		d.more++
		return
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	d.problems = append(d.problems, Problem{Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// value decodes n into v, the field at path. size says that v counts
// bytes.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, size bool) {
	if d.budget--; d.budget < 0 {
		if d.budget == -1 {
			d.fail(n, path, "too many nodes (aliases of aliases?)")
		}
		return
	}
	for n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			d.fail(n, path, "an alias to nothing")
			return
		}
		n = n.Alias
	}
	if n.ShortTag() == "!!null" {
		switch v.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			v.Set(reflect.Zero(v.Type()))
		}
		return // a null leaves any other field as it was, as yaml.v3 does
	}
	if v.CanAddr() {
		if pt := v.Addr().Type(); pt.Implements(unmarshalerType) || (n.Kind == yaml.ScalarNode && pt.Implements(textType)) {
			d.custom(n, v, path)
			return
		}
	}
	t := v.Type()
	switch {
	case t == durationType:
		d.duration(n, v, path)
		return
	case size && isInt(t.Kind()):
		d.size(n, v, path)
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.value(n, v.Elem(), path, size)
	case reflect.Struct:
		d.structure(n, v, path)
	case reflect.Slice:
		d.list(n, v, path, size)
	case reflect.Map:
		d.dict(n, v, path, size)
	case reflect.Interface:
		d.custom(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

func isInt(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// resolve follows n's aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n.Kind == yaml.AliasNode && n.Alias != nil && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// describe names what n is, for "want X, not Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// custom decodes n into v with yaml.v3 (v's own UnmarshalYAML or
// UnmarshalText, or an interface).
func (d *decoder) custom(n *yaml.Node, v reflect.Value, path string) {
	err := n.Decode(v.Addr().Interface())
	if err == nil {
		return
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, e := range te.Errors {
			d.fail(nil, "", "%s", e)
		}
		return
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "line ") {
		d.fail(nil, "", "%s", msg) // it says where itself
		return
	}
	d.fail(n, path, "%s", msg)
}

// scalar decodes a bool, number or string.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	k := v.Kind()
	want := map[reflect.Kind]string{reflect.Bool: "true or false", reflect.String: "a string",
		reflect.Float32: "a number", reflect.Float64: "a number"}[k]
	if isInt(k) {
		want = "a whole number"
	}
	if want == "" {
		d.custom(n, v, path) // a kind no config uses: as yaml.v3 does
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want %s, not %s", want, describe(n))
		return
	}
	if err := n.Decode(v.Addr().Interface()); err == nil {
		return
	}
	val := strconv.Quote(n.Value)
	switch {
	case k == reflect.Bool:
		d.fail(n, path, "%s is not true or false", val)
	case isInt(k) && (n.ShortTag() == "!!int" || n.ShortTag() == "!!float"):
		lo, hi := intRange(v.Type())
		d.fail(n, path, "%s is out of range (want a whole number from %s to %s)", val, lo, hi)
	case isInt(k):
		d.fail(n, path, "%s is not a whole number", val)
	default:
		d.fail(n, path, "%s is not a number", val)
	}
}

// intRange is the smallest and largest value of an integer type.
func intRange(t reflect.Type) (string, string) {
	bits := t.Bits()
	switch t.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "0", strconv.FormatUint(math.MaxUint64>>(64-bits), 10)
	}
	return strconv.FormatInt(math.MinInt64>>(64-bits), 10), strconv.FormatInt(math.MaxInt64>>(64-bits), 10)
}

// duration decodes a time.Duration with ParseDuration; a number without
// a unit is refused (what would 30 be?), except 0.
func (d *decoder) duration(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want a duration (%s), not %s", durationWant, describe(n))
		return
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		if f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64); err == nil && f == 0 {
			v.SetInt(0)
			return
		}
		d.fail(n, path, "%s has no unit (%s)", strconv.Quote(n.Value), durationWant)
		return
	}
	dur, err := ParseDuration(n.Value)
	if err != nil {
		d.fail(n, path, "%v", err)
		return
	}
	v.SetInt(int64(dur))
}

// size decodes a byte count: a YAML number as yaml.v3 reads it (a
// negative one is left to the config's Validate, as before units), or a
// string as ParseSize reads it.
func (d *decoder) size(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(n, path, "want a size (%s), not %s", sizeWant, describe(n))
		return
	}
	switch n.ShortTag() {
	case "!!int", "!!float":
		d.scalar(n, v, path)
		return
	}
	b, err := ParseSize(n.Value)
	if err != nil {
		d.fail(n, path, "%v", err)
		return
	}
	switch v.Kind() {
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if v.OverflowUint(uint64(b)) {
			_, hi := intRange(v.Type())
			d.fail(n, path, "%s is out of range (at most %s bytes)", strconv.Quote(n.Value), hi)
			return
		}
		v.SetUint(uint64(b))
	default:
		if v.OverflowInt(b) {
			_, hi := intRange(v.Type())
			d.fail(n, path, "%s is out of range (at most %s bytes)", strconv.Quote(n.Value), hi)
			return
		}
		v.SetInt(b)
	}
}

// list decodes a sequence into a slice.
func (d *decoder) list(n *yaml.Node, v reflect.Value, path string, size bool) {
	if n.Kind != yaml.SequenceNode {
		if n.Kind == yaml.ScalarNode {
			d.fail(n, path, "want a list, not %s (for one item write [%s])", describe(n), n.Value)
		} else {
			d.fail(n, path, "want a list, not %s", describe(n))
		}
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ip := fmt.Sprintf("%s[%d]", path, i)
		if resolve(item).ShortTag() == "!!null" {
			switch v.Type().Elem().Kind() {
			case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			default:
				// yaml.v3 drops it, and the items after it move up.
				d.fail(item, ip, "an empty item (a lone - or ~)")
				continue
			}
		}
		d.value(item, s.Index(i), ip, size)
	}
	v.Set(s)
}

// join is the path of the field name below path.
func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// pair is one key and value of a mapping.
type pair struct{ key, val *yaml.Node }

// pairs returns m's keys and values, those of its merge keys ("<<")
// included: a key written in m wins over a merged one, and of two merged
// mappings the first wins. A key written twice in m is a problem.
func (d *decoder) pairs(m *yaml.Node, path string) []pair {
	var own, merged []pair
	lines := map[string]int{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, val := m.Content[i], m.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Value == "<<" && (k.Tag == "" || k.Tag == "!" || k.ShortTag() == "!!merge") {
			merged = append(merged, d.merge(val, path)...)
			continue
		}
		if k.Kind == yaml.ScalarNode {
			if line, dup := lines[k.Value]; dup {
				d.fail(k, join(path, k.Value), "given twice (first on line %d)", line)
				continue
			}
			lines[k.Value] = k.Line
		}
		own = append(own, pair{k, val})
	}
	for _, p := range merged {
		if _, ok := lines[p.key.Value]; !ok && p.key.Kind == yaml.ScalarNode {
			lines[p.key.Value] = p.key.Line
			own = append(own, p)
		}
	}
	return own
}

// merge returns the pairs a merge key's value brings: a mapping, or a
// list of them.
func (d *decoder) merge(n *yaml.Node, path string) []pair {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	switch n.Kind {
	case yaml.MappingNode:
		return d.pairs(n, path)
	case yaml.SequenceNode:
		var out []pair
		for _, m := range n.Content {
			for m.Kind == yaml.AliasNode && m.Alias != nil {
				m = m.Alias
			}
			if m.Kind != yaml.MappingNode {
				d.fail(m, path, "<<: want a mapping or a list of mappings to merge, not %s", describe(m))
				continue
			}
			out = append(out, d.pairs(m, path)...)
		}
		return out
	}
	d.fail(n, path, "<<: want a mapping or a list of mappings to merge, not %s", describe(n))
	return nil
}

// dict decodes a mapping into a Go map.
func (d *decoder) dict(n *yaml.Node, v reflect.Value, path string, size bool) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping, not %s", describe(n))
		return
	}
	if v.IsNil() {
		v.Set(reflect.MakeMap(v.Type()))
	}
	t := v.Type()
	for _, p := range d.pairs(n, path) {
		k := reflect.New(t.Key()).Elem()
		kp := join(path, p.key.Value)
		d.value(p.key, k, kp, false)
		e := reflect.New(t.Elem()).Elem()
		d.value(p.val, e, kp, size)
		if k.Type().Comparable() {
			v.SetMapIndex(k, e)
		}
	}
}

// field is one field of a struct as the config names it.
type field struct {
	name  string
	index []int // through inline structs
	size  bool  // it counts bytes
}

// fields returns t's fields by YAML name, in order, those of inline
// structs included, and the index of an inline map that takes the other
// keys (nil if none).
func fields(t reflect.Type) (list []field, inlineMap []int) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if slices.Contains(strings.Split(opts, ","), "inline") {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch ft.Kind() {
			case reflect.Struct:
				sub, m := fields(ft)
				for _, s := range sub {
					s.index = append([]int{i}, s.index...)
					list = append(list, s)
				}
				if m != nil && inlineMap == nil {
					inlineMap = append([]int{i}, m...)
				}
			case reflect.Map:
				inlineMap = []int{i}
			}
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		list = append(list, field{name: name, index: []int{i}, size: name == "bytes" || strings.HasSuffix(name, "_bytes")})
	}
	return list, inlineMap
}

// names are the fields' names.
func names(list []field) []string {
	out := make([]string, len(list))
	for i, f := range list {
		out[i] = f.name
	}
	return out
}

// fieldOf returns v's field at index, allocating the pointers on the way.
func fieldOf(v reflect.Value, index []int) reflect.Value {
	for _, i := range index {
		if v.Kind() == reflect.Pointer {
			if v.IsNil() {
				v.Set(reflect.New(v.Type().Elem()))
			}
			v = v.Elem()
		}
		v = v.Field(i)
	}
	return v
}

// structure decodes a mapping into a struct, refusing unknown fields.
func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string) {
	list, inlineMap := fields(v.Type())
	if n.Kind != yaml.MappingNode {
		where := "want a mapping of fields"
		if path == "" {
			where = "want a mapping of fields at the top level"
		}
		d.fail(n, path, "%s (such as %s), not %s", where, strings.Join(names(list[:min(len(list), 3)]), ", "), describe(n))
		return
	}
	byName := make(map[string]field, len(list))
	for _, f := range list {
		byName[f.name] = f
	}
	for _, p := range d.pairs(n, path) {
		if p.key.Kind != yaml.ScalarNode {
			d.fail(p.key, path, "want a field name, not %s", describe(p.key))
			continue
		}
		name := p.key.Value
		if p.key.ShortTag() == "!!null" {
			d.fail(p.key, path, "a key with no name (yaml.v3 would skip it and its value)")
			continue
		}
		if f, ok := byName[name]; ok {
			d.value(p.val, fieldOf(v, f.index), join(path, name), f.size)
			continue
		}
		if inlineMap != nil {
			m := fieldOf(v, inlineMap)
			if m.IsNil() {
				m.Set(reflect.MakeMap(m.Type()))
			}
			k := reflect.New(m.Type().Key()).Elem()
			d.value(p.key, k, join(path, name), false)
			e := reflect.New(m.Type().Elem()).Elem()
			d.value(p.val, e, join(path, name), false)
			m.SetMapIndex(k, e)
			continue
		}
		d.unknown(p.key, path, name, names(list))
	}
}

// unknown reports a field that the struct at path does not have.
func (d *decoder) unknown(k *yaml.Node, path, name string, known []string) {
	hint := ""
	if near := Nearest(name, known); near != "" {
		hint = "; did you mean " + near + "?"
	} else if len(known) <= 16 {
		hint = " (the fields here: " + strings.Join(known, ", ") + ")"
	}
	if path == "" {
		d.fail(k, "", "unknown top-level field %s%s", name, hint)
		return
	}
	d.fail(k, join(path, name), "unknown field%s", hint)
}
