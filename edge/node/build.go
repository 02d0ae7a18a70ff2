package node

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo says which Meridian a process runs: the main module's version
// (a tag, or "(devel)" for a local build), the VCS revision it was built
// from and whether the tree had changes, and the Go version.
type BuildInfo struct {
	Version   string `json:"version"`
	Revision  string `json:"revision"`
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
}

// Build returns this binary's BuildInfo, from what the Go toolchain
// stamped in it (debug.ReadBuildInfo). Fields the build did not record
// are "unknown".
func Build() BuildInfo {
	b := BuildInfo{Version: "unknown", Revision: "unknown", GoVersion: runtime.Version()}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := info.Main.Version; v != "" {
		b.Version = v
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// buildInfoGauge is meridian_build_info: 1, with the build as labels.
func buildInfoGauge(b BuildInfo) prometheus.Collector {
	modified := "false"
	if b.Modified {
		modified = "true"
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meridian_build_info",
		Help: "Always 1; the labels say which Meridian this process runs.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision,
			"modified": modified, "go_version": b.GoVersion},
	}, func() float64 { return 1 })
}
