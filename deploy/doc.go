// Package deploy holds Meridian's deployment files; its tests check them.
//
// The folder has the container image (Dockerfile), the Kubernetes manifests
// of a region (k8s/base and one overlay per region in k8s/overlays), the
// Prometheus rules and scrape jobs (prometheus/) and the Grafana dashboard
// (grafana/). The tests resolve each overlay the way kustomize does, check
// the references between the objects, run the edge and geo configs that the
// ConfigMaps carry through `meridian validate`, and check that the alerts
// and the dashboard use metrics the code exports.
package deploy
