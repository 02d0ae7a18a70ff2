// Package compress is the edge's content coding: which coding a client
// gets (Coder.Negotiate), which responses are worth compressing
// (Coder.Compressible), and streaming encoders and decoders for gzip,
// brotli and zstd (Coder.Encode, Decode). It does no HTTP of its own:
// package edge decides where they apply and caches what they produce.
package compress

import (
	"errors"
	"fmt"
	"mime"
	"slices"
	"strings"
)

// Coding is a content coding (RFC 9110 §8.4.1).
type Coding uint8

// The codings the edge can produce and read.
const (
	Identity Coding = iota
	Gzip
	Brotli
	Zstd
)

var codingNames = [...]string{Identity: "identity", Gzip: "gzip", Brotli: "br", Zstd: "zstd"}

// String is the coding's token, as Content-Encoding and Accept-Encoding
// spell it.
func (c Coding) String() string {
	if int(c) < len(codingNames) {
		return codingNames[c]
	}
	return fmt.Sprintf("coding(%d)", uint8(c))
}

// ParseCoding reads a single content-coding token (case-insensitive;
// x-gzip is gzip). ok is false for anything else, a list included.
func ParseCoding(s string) (c Coding, ok bool) {
	s = strings.TrimSpace(s)
	switch {
	case strings.EqualFold(s, "x-gzip"):
		return Gzip, true
	case s == "":
		return Identity, true
	}
	for i, n := range codingNames {
		if strings.EqualFold(s, n) {
			return Coding(i), true
		}
	}
	return 0, false
}

// Config is a site's on-the-fly compression. The zero value is off.
type Config struct {
	// Enabled turns compression (and decompression for clients that do
	// not accept what the origin sent) on for the site. Default false,
	// as nginx's gzip: an origin whose ETags or bodies must reach
	// clients byte for byte is not changed unless asked.
	Enabled bool `yaml:"enabled"`
	// Encodings are the codings the edge offers, in order of
	// preference: a client gets the first one it accepts, else
	// identity. Default [br, zstd, gzip]: brotli is the smallest for
	// text at a comparable cost and every browser has it over HTTPS;
	// zstd next; gzip is what every client decodes.
	Encodings []string `yaml:"encodings"`
	// Types are the media types compressed, without parameters; "text/*"
	// matches a whole top-level type. Default: nginx's usual gzip_types
	// list with text/html (see DefaultTypes). Types already compressed
	// (images but SVG, audio, video, archives, woff/woff2) never are,
	// whatever this says.
	Types []string `yaml:"types"`
	// MinBytes is the smallest body compressed, by its Content-Length
	// (a body of unknown length is compressed, as nginx's
	// gzip_min_length). Default 1024: below about one packet the saving
	// is a few hundred bytes at best, and each object compressed costs
	// a variant in the cache.
	MinBytes int64 `yaml:"min_bytes"`
	// MaxBytes is the largest body compressed on the fly, by its
	// Content-Length; larger ones go as the origin sent them. It bounds
	// the CPU one object costs. Default 8 MiB (the default
	// cache.max_object_bytes: an object compressed once is stored).
	MaxBytes int64 `yaml:"max_bytes"`
	// GzipLevel is gzip's level, 1 (fastest) to 9. Default 6, zlib's
	// default: each variant is compressed once and then cached.
	GzipLevel int `yaml:"gzip_level"`
	// BrotliLevel is brotli's quality, 0 to 11. Default 5: about gzip
	// 9's size or better at gzip 6's speed; 10 and 11 cost 50-100 times
	// more CPU for a few per cent.
	BrotliLevel int `yaml:"brotli_level"`
	// ZstdLevel is zstd's level, 1 to 22, mapped to the encoder's four
	// speeds (fastest, default, better, best). Default 3, zstd's
	// default.
	ZstdLevel int `yaml:"zstd_level"`
	// MaxDecodedBytes caps what the edge decodes of one compressed
	// body from the origin (for a client that does not accept its
	// coding): past it the response fails (the client's connection or
	// stream is reset, nothing is stored). Default 256 MiB: far above
	// any object worth decoding on the fly, far below what a
	// decompression bomb makes (10 GiB from 10 MiB of gzip).
	MaxDecodedBytes int64 `yaml:"max_decoded_bytes"`
	// MaxDecodeRatio caps the decoded bytes per compressed byte read,
	// beyond the first MiB decoded: past it the response fails as past
	// MaxDecodedBytes. Default 100: text and JSON compress 3 to 20
	// times, and gzip of zeros about 1000 times.
	MaxDecodeRatio int64 `yaml:"max_decode_ratio"`
}

// DefaultTypes are the media types compressed by default: text/html and
// the types of nginx's commonly configured gzip_types.
var DefaultTypes = []string{
	"text/html", "text/plain", "text/css", "text/javascript", "text/xml", "text/markdown", "text/csv",
	"text/calendar", "text/vtt", "text/x-component",
	"application/javascript", "application/x-javascript", "application/ecmascript",
	"application/json", "application/ld+json", "application/manifest+json", "application/geo+json",
	"application/xml", "application/xhtml+xml", "application/rss+xml", "application/atom+xml",
	"application/wasm", "application/vnd.ms-fontobject", "application/x-font-ttf",
	"font/ttf", "font/otf", "image/svg+xml", "image/x-icon", "image/bmp",
}

// Defaults of Config.
const (
	DefaultMinBytes    = 1024
	DefaultMaxBytes    = 8 << 20
	DefaultGzipLevel   = 6
	DefaultBrotliLevel = 5
	DefaultZstdLevel   = 3
	// DefaultMaxDecodedBytes and DefaultMaxDecodeRatio bound decoding
	// (see Config).
	DefaultMaxDecodedBytes = 256 << 20
	DefaultMaxDecodeRatio  = 100
)

// WithDefaults returns c with every unset field given its default.
func (c Config) WithDefaults() Config {
	if c.Encodings == nil {
		c.Encodings = []string{"br", "zstd", "gzip"}
	}
	if c.Types == nil {
		c.Types = slices.Clone(DefaultTypes)
	}
	if c.MinBytes == 0 {
		c.MinBytes = DefaultMinBytes
	}
	if c.MaxBytes == 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	if c.GzipLevel == 0 {
		c.GzipLevel = DefaultGzipLevel
	}
	if c.BrotliLevel == 0 {
		c.BrotliLevel = DefaultBrotliLevel
	}
	if c.ZstdLevel == 0 {
		c.ZstdLevel = DefaultZstdLevel
	}
	if c.MaxDecodedBytes == 0 {
		c.MaxDecodedBytes = DefaultMaxDecodedBytes
	}
	if c.MaxDecodeRatio == 0 {
		c.MaxDecodeRatio = DefaultMaxDecodeRatio
	}
	return c
}

// Validate reports the first bad field of a config given its defaults,
// named as in YAML relative to the compression section
// ("encodings[1]: ...").
func (c Config) Validate() error {
	seen := map[Coding]bool{}
	for i, s := range c.Encodings {
		cd, ok := ParseCoding(s)
		if !ok || cd == Identity {
			return fmt.Errorf("encodings[%d]: %q is not one of br, zstd, gzip", i, s)
		}
		if seen[cd] {
			return fmt.Errorf("encodings[%d]: %q listed twice", i, s)
		}
		seen[cd] = true
	}
	for i, t := range c.Types {
		if _, err := parseType(t); err != nil {
			return fmt.Errorf("types[%d]: %w", i, err)
		}
	}
	switch {
	case c.MinBytes < 0:
		return errors.New("min_bytes: negative")
	case c.MaxBytes < 0:
		return errors.New("max_bytes: negative")
	case c.MaxBytes < c.MinBytes:
		return fmt.Errorf("max_bytes: %d is below min_bytes %d", c.MaxBytes, c.MinBytes)
	case c.GzipLevel < 1 || c.GzipLevel > 9:
		return fmt.Errorf("gzip_level: %d (want 1 to 9)", c.GzipLevel)
	case c.BrotliLevel < 0 || c.BrotliLevel > 11:
		return fmt.Errorf("brotli_level: %d (want 0 to 11)", c.BrotliLevel)
	case c.ZstdLevel < 1 || c.ZstdLevel > 22:
		return fmt.Errorf("zstd_level: %d (want 1 to 22)", c.ZstdLevel)
	case c.MaxDecodedBytes < 0:
		return errors.New("max_decoded_bytes: negative")
	case c.MaxDecodeRatio < 0:
		return errors.New("max_decode_ratio: negative")
	}
	return nil
}

// parseType checks a configured media type: "type/subtype" or "type/*",
// lower-cased.
func parseType(t string) (string, error) {
	mt, params, err := mime.ParseMediaType(t)
	if err != nil || len(params) > 0 || !strings.Contains(mt, "/") {
		return "", fmt.Errorf("%q is not a media type (type/subtype, or type/*)", t)
	}
	return mt, nil
}

// incompressible are media types whose bodies are compressed already:
// never compressed, whatever Types says.
var incompressible = []string{
	"image/*", "audio/*", "video/*", "font/woff", "font/woff2", "application/font-woff",
	"application/zip", "application/gzip", "application/x-gzip", "application/zstd", "application/x-bzip2",
	"application/x-xz", "application/x-7z-compressed", "application/x-rar-compressed", "application/vnd.rar",
	"application/x-brotli", "application/octet-stream",
}

// Coder is a validated Config, ready to use; safe for concurrent use.
type Coder struct {
	cfg    Config
	prefs  []Coding
	exact  map[string]bool
	prefix []string // "text/" of "text/*"
	pools  codecPools
}

// New builds a Coder from a config (its defaults are filled in).
func New(cfg Config) (*Coder, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Coder{cfg: cfg, exact: map[string]bool{}}
	for _, s := range cfg.Encodings {
		cd, _ := ParseCoding(s)
		c.prefs = append(c.prefs, cd)
	}
	for _, t := range cfg.Types {
		mt, _ := parseType(t)
		if sub, ok := strings.CutSuffix(mt, "/*"); ok {
			c.prefix = append(c.prefix, sub+"/")
		} else {
			c.exact[mt] = true
		}
	}
	return c, nil
}

// Config is the coder's config, with its defaults.
func (c *Coder) Config() Config { return c.cfg }

// Compressible reports whether a response of this Content-Type and
// Content-Length (-1: unknown) is compressed: a listed type that is not
// compressed already, within min_bytes and max_bytes.
func (c *Coder) Compressible(contentType string, length int64) bool {
	if length >= 0 && (length < c.cfg.MinBytes || length > c.cfg.MaxBytes) {
		return false
	}
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.ToLower(strings.TrimSpace(mt))
	if mt == "" || matchType(mt, incompressible) && mt != "image/svg+xml" && mt != "image/x-icon" && mt != "image/bmp" {
		return false
	}
	if c.exact[mt] {
		return true
	}
	for _, p := range c.prefix {
		if strings.HasPrefix(mt, p) {
			return true
		}
	}
	return false
}

func matchType(mt string, list []string) bool {
	for _, t := range list {
		if p, ok := strings.CutSuffix(t, "*"); ok {
			if strings.HasPrefix(mt, p) {
				return true
			}
		} else if mt == t {
			return true
		}
	}
	return false
}

// Negotiate returns the coding a request with these Accept-Encoding field
// lines gets: the first of the configured encodings that the client
// accepts (named with a weight above zero, or not named and "*"
// accepted), else Identity. Preference weights among accepted codings are
// not followed: the edge's order is (RFC 9110 §12.5.3 lets the server
// choose). No field at all, an empty one, or an item with a malformed
// weight (which counts as not accepting that coding) may all give
// Identity.
func (c *Coder) Negotiate(lines []string) Coding {
	var acc acceptance
	for _, l := range lines {
		add(&acc, l)
	}
	return acc.pick(c.prefs)
}

// NegotiateBytes is Negotiate of one field line given as bytes (a fast
// front's buffer), without allocating; nil means no field.
func (c *Coder) NegotiateBytes(line []byte) Coding {
	var acc acceptance
	add(&acc, line)
	return acc.pick(c.prefs)
}

// acceptance is what an Accept-Encoding field says of each coding.
type acceptance struct {
	named, accepted [len(codingNames)]bool
	star, starOK    bool
}

type text interface{ ~string | ~[]byte }

// add reads one Accept-Encoding field line.
func add[T text](a *acceptance, line T) {
	for len(line) > 0 {
		i := 0
		for i < len(line) && line[i] != ',' {
			i++
		}
		item := trim(line[:i])
		if i < len(line) {
			line = line[i+1:]
		} else {
			line = line[:0]
		}
		if len(item) == 0 {
			continue
		}
		j := 0
		for j < len(item) && item[j] != ';' {
			j++
		}
		name := trim(item[:j])
		q := true
		if j < len(item) {
			var ok bool
			if q, ok = weight(item[j+1:]); !ok {
				q = false // malformed: not accepted
			}
		}
		if len(name) == 1 && name[0] == '*' {
			a.star, a.starOK = true, q
			continue
		}
		cd, ok := codingOf(name)
		if !ok || cd == Identity {
			continue
		}
		a.named[cd] = true
		a.accepted[cd] = a.accepted[cd] || q
	}
}

func (a *acceptance) pick(prefs []Coding) Coding {
	for _, cd := range prefs {
		if a.accepted[cd] || a.star && a.starOK && !a.named[cd] {
			return cd
		}
	}
	return Identity
}

func trim[T text](s T) T {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// codingOf matches a coding token case-insensitively, without allocating.
func codingOf[T text](s T) (Coding, bool) {
	if eqFold(s, "x-gzip") {
		return Gzip, true
	}
	for i, n := range codingNames {
		if eqFold(s, n) {
			return Coding(i), true
		}
	}
	return 0, false
}

func eqFold[T text](s T, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// weight reads "q=qvalue" (RFC 9110 §12.4.2, after the ';') and reports
// whether it is above zero; ok is false when it is malformed.
func weight[T text](s T) (positive, ok bool) {
	s = trim(s)
	if len(s) < 3 || (s[0] != 'q' && s[0] != 'Q') || s[1] != '=' {
		return false, false
	}
	v := s[2:]
	if len(v) > 5 {
		return false, false
	}
	switch v[0] {
	case '1':
		for i := 1; i < len(v); i++ {
			if i == 1 && v[i] != '.' || i > 1 && v[i] != '0' {
				return false, false
			}
		}
		return true, true
	case '0':
		if len(v) > 1 && v[1] != '.' {
			return false, false
		}
		pos := false
		for i := 2; i < len(v); i++ {
			if v[i] < '0' || v[i] > '9' {
				return false, false
			}
			pos = pos || v[i] != '0'
		}
		return pos, true
	}
	return false, false
}
