package edge

import (
	"context"

	"github.com/meridiancdn/meridian/edge/fill"
)

// FillInfoFrom returns the fill.Info of a request that upstreamRequest
// built, for the package's own tests (the fill hands it to the site's
// upstream as a parameter; no other package reads it from a context).
func FillInfoFrom(ctx context.Context) (fill.Info, bool) {
	fi, ok := ctx.Value(fillKey{}).(fill.Info)
	return fi, ok
}
