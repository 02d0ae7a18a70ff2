// Package origin is the upstream side of a Meridian site: origin pools with
// health checks, retries, timeouts and circuit breaking, and a demo origin
// that serves generated objects for local runs and tests.
package origin
