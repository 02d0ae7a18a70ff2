package edge

import "testing"

func TestArmorRefuses(t *testing.T) {
	for _, tc := range []struct {
		path, ct string
		refuse   bool
	}{
		{"/account/settings/x.css", "text/html; charset=utf-8", true},
		{"/account/settings/x.css", "", true},
		{"/static/site.css", "text/css; charset=utf-8", false},
		{"/static/app.JS", "application/javascript", false},
		{"/img/a.jpg", "image/webp", false}, // an image for an image extension
		{"/img/a.jpg", "text/html", true},
		{"/fonts/a.woff2", "font/woff2", false},
		{"/account", "text/html", false},      // no extension: not checked
		{"/download.bin", "text/html", false}, // unknown extension: not checked
		{"/x.svg", "image/svg+xml", false},
		{"/x.svg", "text/html", true},
		{"/x.json", "application/json;charset=utf-8", false},
		{"/x.css", "text/css; =bad", true}, // unparsable
	} {
		if got := armorRefuses(tc.path, tc.ct); got != tc.refuse {
			t.Errorf("armorRefuses(%q, %q) = %v, want %v", tc.path, tc.ct, got, tc.refuse)
		}
	}
}
