package bench

import (
	"encoding/json"
	"net/http"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"time"
)

// DebugHandler serves a process's own numbers for the benchmark, on a
// listener of its own (never the edge's):
//
//	GET /debug/memstats[?gc=1]           MemStats as JSON; gc=1 collects garbage (pools included) and returns free memory to the OS first
//	GET /debug/pprof/profile?seconds=N   a CPU profile (pprof format) of the next N s (default 10, at most 120)
//	GET /debug/pprof/allocs              the allocations since the process started (pprof format; two of them and pprof -base give an interval's)
//
// It uses runtime/pprof directly rather than net/http/pprof, which would
// register itself on http.DefaultServeMux.
func DebugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/memstats", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("gc") == "1" {
			// Two collections: the first moves sync.Pool's buffers (a
			// burst of requests leaves some) to the victim cache, the
			// second frees them, so that the reading is the live objects.
			// FreeOSMemory then returns free pages: RSS is live memory.
			runtime.GC()
			debug.FreeOSMemory()
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(MemStats{
			HeapAlloc: m.HeapAlloc, HeapInuse: m.HeapInuse, HeapSys: m.HeapSys,
			HeapObjects: m.HeapObjects, Sys: m.Sys, NumGC: m.NumGC,
		})
	})
	mux.HandleFunc("GET /debug/pprof/profile", func(w http.ResponseWriter, r *http.Request) {
		secs := 10
		if s := r.URL.Query().Get("seconds"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 120 {
				http.Error(w, "seconds: want 1 to 120", http.StatusBadRequest)
				return
			}
			secs = n
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if err := pprof.StartCPUProfile(w); err != nil {
			// Another profile is running; the header is not sent yet.
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			http.Error(w, "cpu profile: "+err.Error(), http.StatusConflict)
			return
		}
		t := time.NewTimer(time.Duration(secs) * time.Second)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
		pprof.StopCPUProfile()
	})
	mux.HandleFunc("GET /debug/pprof/allocs", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		pprof.Lookup("allocs").WriteTo(w, 0)
	})
	return mux
}
