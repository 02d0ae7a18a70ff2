package cluster_test

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/meridiancdn/meridian/edge"
	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/fill"
)

// An edge joins its region: the node is built first, wraps each site's
// upstream, and starts with the edge's handler behind its peer endpoint.
func ExampleNode() {
	log := slog.Default()
	node, err := cluster.New(cluster.Config{
		Name:       "edge-fra-1", // the edge's name too
		Zone:       "fra-a",
		Seeds:      []string{"10.0.0.6:7946"},
		SecretFile: "/etc/meridian/region.secret",
	}, cluster.Options{Logger: log})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer node.Close()

	h, err := edge.New(edge.Config{
		Name:  "edge-fra-1",
		Sites: []edge.SiteConfig{{Hosts: []string{"cdn.example"}, Origin: "https://origin.example"}},
	}, edge.Options{
		Logger: log,
		WrapUpstream: func(_ edge.SiteConfig, origin fill.Upstream) fill.Upstream {
			return node.Transport(origin)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	if err := node.Start(h); err != nil {
		fmt.Println(err)
		return
	}

	// ... serve h on the client listeners until told to stop, then:
	node.Leave(5 * time.Second) // the region drops this edge at once
}
