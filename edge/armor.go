package edge

import (
	"mime"
	"path"
	"strings"
)

// armorTypes maps a path extension to the media types a response for it
// may have (an entry ending in "/" is a prefix: any image for .png).
// Only extensions that name static content are listed: a request for
// /account/settings/x.css answered with text/html is the web cache
// deception pattern; any other extension, or none, is not checked.
var armorTypes = map[string][]string{
	".css":   {"text/css"},
	".js":    {"text/javascript", "application/javascript", "application/x-javascript", "application/ecmascript"},
	".mjs":   {"text/javascript", "application/javascript"},
	".json":  {"application/json", "application/manifest+json", "application/ld+json"},
	".map":   {"application/json"},
	".xml":   {"application/xml", "text/xml"},
	".txt":   {"text/plain"},
	".csv":   {"text/csv", "text/plain"},
	".png":   {"image/"},
	".jpg":   {"image/"},
	".jpeg":  {"image/"},
	".gif":   {"image/"},
	".webp":  {"image/"},
	".avif":  {"image/"},
	".svg":   {"image/svg+xml"},
	".ico":   {"image/"},
	".bmp":   {"image/"},
	".woff":  {"font/", "application/font-woff", "application/x-font-woff"},
	".woff2": {"font/", "application/font-woff2"},
	".ttf":   {"font/", "application/x-font-ttf", "application/font-sfnt"},
	".otf":   {"font/", "application/x-font-otf", "application/font-sfnt"},
	".eot":   {"application/vnd.ms-fontobject"},
	".mp4":   {"video/"},
	".webm":  {"video/", "audio/"},
	".mp3":   {"audio/"},
	".ogg":   {"audio/", "video/", "application/ogg"},
	".wasm":  {"application/wasm"},
	".pdf":   {"application/pdf"},
	".zip":   {"application/zip"},
	".gz":    {"application/gzip", "application/x-gzip"},
}

// armorRefuses reports whether a response with this Content-Type must not
// be stored for a request path (SiteConfig.DeceptionArmor): the path's
// extension names static content and the Content-Type is not one of its
// types (a missing or unparsable Content-Type included), as Cloudflare's
// Cache Deception Armor.
func armorRefuses(p, contentType string) bool {
	want, ok := armorTypes[strings.ToLower(path.Ext(p))]
	if !ok {
		return false
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return true
	}
	for _, w := range want {
		if mt == w || strings.HasSuffix(w, "/") && strings.HasPrefix(mt, w) {
			return false
		}
	}
	return true
}
