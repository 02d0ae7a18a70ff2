package node_test

import "github.com/meridiancdn/meridian/edge/node"

func reload(n *node.Node, cfg node.Config) error { _, err := n.Reload(cfg); return err }
