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

// stampedVersion and stampedRevision are set at link time by builds whose
// source has no VCS metadata, such as the image (deploy/Dockerfile: the
// build context leaves .git out):
//
//	go build -ldflags "-X github.com/meridiancdn/meridian/edge/node.stampedVersion=v1.2.0
//	  -X github.com/meridiancdn/meridian/edge/node.stampedRevision=$(git rev-parse HEAD)"
//
// They win over what the toolchain recorded. Empty: not stamped.
var stampedVersion, stampedRevision string

// Build returns this binary's BuildInfo, from what the Go toolchain
// stamped in it (debug.ReadBuildInfo) or the link-time stamps. Fields
// the build did not record are "unknown".
func Build() BuildInfo {
	b := recordedBuild()
	if stampedVersion != "" {
		b.Version = stampedVersion
	}
	if stampedRevision != "" {
		b.Revision, b.Modified = stampedRevision, false
	}
	return b
}

// recordedBuild is what the Go toolchain recorded of the build.
func recordedBuild() BuildInfo {
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
