// Package bench measures Meridian side by side with nginx and Varnish: it
// parses the load tools' output (wrk, h2load), reads the servers' CPU time
// and memory from /proc, generates HTTP/1.1, HTTP/2 and HTTP/3 load of its
// own, measures request coalescing, and turns the samples of a run into
// medians, ratios to nginx and a Markdown table.
//
// The run itself (installing the servers, starting them pinned to one core,
// interleaving the measurements) is run.sh in this folder; `meridian bench`
// exposes this package's tools to it.
package bench
