package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meridiancdn/meridian/edge/limit"
	"github.com/meridiancdn/meridian/ring"
)

// Config is an edge's membership in its region's cluster: the `cluster`
// section of the node's YAML. Its zero value plus a name and a secret is a
// working single-member region; every field documents its default, and
// [Config.WithDefaults] fills them in.
type Config struct {
	// Name is this member's name in the region: unique, and stable across
	// restarts and address changes, because the ring places keys by name.
	// Letters, digits, '.', '_' and '-', at most 128 bytes. Required.
	//
	// Use the edge's own name (its Cache-Status name): a peer's answer
	// counts as the owner's only when its last Cache-Status entry carries
	// the owner's member name.
	Name string `yaml:"name"`
	// Zone is the member's failure domain (rack, availability zone), at
	// most 64 bytes. Default "" (one zone like any other).
	Zone string `yaml:"zone"`
	// Weight is the member's relative capacity: weight 2 owns twice the
	// keys of weight 1. Default 1; at most ring.MaxWeight.
	Weight int `yaml:"weight"`
	// Draining takes this member's keys away before maintenance: it stays
	// a member and serves what it holds, but owns no key; about 1/n of
	// the region's keys move to the other members, none between them
	// (see ring.Peer.Draining). A config reload (SIGHUP) applies it to a
	// running member ([Member.SetDraining]). Default false.
	Draining bool `yaml:"draining"`

	// GossipListen is the IP:port memberlist binds for gossip (UDP and
	// TCP on the same port). Port 0 picks a free port ([Member.GossipAddr]
	// reports it). Default "0.0.0.0:7946", memberlist's port.
	GossipListen string `yaml:"gossip_listen"`
	// Advertise is the IP:port the other members reach this member's
	// gossip at, when that is not GossipListen (NAT, a wildcard bind).
	// Default: the bound address; for a wildcard bind memberlist picks a
	// private IP of this host.
	Advertise string `yaml:"advertise"`
	// PeerListen is the host:port of the peer endpoint, the HTTP listener
	// the other members fill from. Port 0 picks a free port. Default
	// "0.0.0.0:7947"; a wildcard host is advertised with the gossip IP.
	PeerListen string `yaml:"peer_listen"`

	// Seeds are gossip addresses (host:port) of members to join through.
	// Default none. They may start later: joining retries in the
	// background while this member is alone, and afterwards the member
	// re-joins through every seed (and every member it saw) that it does
	// not see alive, so list every member of the region here.
	Seeds []string `yaml:"seeds"`
	// SeedDNS is a name:port whose A/AAAA records are seeds, such as a
	// Kubernetes headless service; it is resolved again on every join
	// attempt. Default none.
	SeedDNS string `yaml:"seed_dns"`

	// Secret is the region's shared secret, at least 16 bytes: it signs
	// every peer request (HMAC-SHA256) and keys the gossip's encryption.
	// Required unless SecretFile is set.
	Secret string `yaml:"secret"`
	// SecretFile is a file holding the secret (surrounding white space is
	// trimmed), read when the Member is created. Default none.
	SecretFile string `yaml:"secret_file"`

	// TLS puts the links between members on mutual TLS with the cluster
	// CA: see [TLSConfig]. Default off (plain HTTP, signed requests only).
	TLS TLSConfig `yaml:"tls"`

	// Preset names the failure-detection tuning: "lan" (default) for a
	// real network, "local" for one machine's loopback (tests,
	// `meridian up`). See the package documentation.
	Preset string `yaml:"preset"`
	// MaxClockSkew is how far a peer request's timestamp may be from this
	// member's clock, either way, before it is refused. Default 30s.
	MaxClockSkew time.Duration `yaml:"max_clock_skew"`
	// PeerTimeout bounds connecting to a peer and each wait for a sign of
	// life from it: an interim 102 Processing (which a member sends every
	// PeerTimeout/4 while its fill waits on upstream) or the response
	// header. A silent peer is passed over (the fill goes to the next
	// source) and suspected for SuspectFor. How long the fill itself may
	// take is the site's timeout, not this. Default 2s.
	PeerTimeout time.Duration `yaml:"peer_timeout"`
	// SuspectFor is how long a peer that failed (refused, silent for
	// PeerTimeout, reset, or an answer not its own) is passed over (its
	// keys fill from their live replica, else upstream), so that requests
	// do not wait on it while the gossip decides whether it is dead. An
	// answer from the origin relayed by the peer, a 5xx included, is no
	// failure of the peer. Default 10s.
	SuspectFor time.Duration `yaml:"suspect_for"`

	// Replicas is how many members keep each object: 1 (the owner only)
	// or 2 (the owner and the next member in another zone, so that losing
	// a member or a zone does not send its keys to the origin; it costs a
	// second copy of every object in the region's memory). Default 1;
	// at most 3.
	Replicas int `yaml:"replicas"`

	// PeerLimits caps the peer requests (other members' fills, shield
	// fills from other regions, consults) in flight on this member's peer
	// endpoint, after their signature is verified: past max_concurrent
	// they wait in a bounded queue, then get this member's 503 with
	// Retry-After (served by the asker, or its stale copy; the member is
	// not suspected). Default max_concurrent 1024 (each is a fill, so this
	// bounds what other members can make this one fetch at once),
	// max_queue as many, queue_timeout half of peer_timeout (a queued
	// asker hears no liveness signal, so it must be answered first).
	PeerLimits limit.GateConfig `yaml:"peer_limits"`
}

// defaultPeerInflight is PeerLimits.MaxConcurrent's default.
const defaultPeerInflight = 1024

// Limits of names carried in gossip metadata (at most 512 bytes in all).
const (
	maxNameLen = 128
	maxZoneLen = 64
)

// ReadSecret returns the secret: Secret, or the content of SecretFile
// (white space around it trimmed), at least 16 bytes. The error names
// the field.
func (c Config) ReadSecret() (string, error) {
	if c.SecretFile == "" {
		return c.Secret, nil
	}
	b, err := os.ReadFile(c.SecretFile)
	if err != nil {
		return "", fmt.Errorf("cluster.secret_file: %w", err)
	}
	secret := strings.TrimSpace(string(b))
	if len(secret) < minSecretLen {
		return "", fmt.Errorf("cluster.secret_file: secret too short (%d bytes, at least %d)", len(secret), minSecretLen)
	}
	return secret, nil
}

// minSecretLen is the shortest secret accepted: 128 bits.
const minSecretLen = 16

// WithDefaults returns a copy of c with every unset field given its
// default. It is the one place where defaults live.
func (c Config) WithDefaults() Config {
	if c.Weight == 0 {
		c.Weight = 1
	}
	if c.GossipListen == "" {
		c.GossipListen = "0.0.0.0:7946"
	}
	if c.PeerListen == "" {
		c.PeerListen = "0.0.0.0:7947"
	}
	if c.Preset == "" {
		c.Preset = PresetLAN
	}
	if c.MaxClockSkew == 0 {
		c.MaxClockSkew = 30 * time.Second
	}
	if c.PeerTimeout == 0 {
		c.PeerTimeout = 2 * time.Second
	}
	if c.SuspectFor == 0 {
		c.SuspectFor = 10 * time.Second
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.PeerLimits.MaxConcurrent == 0 {
		c.PeerLimits.MaxConcurrent = defaultPeerInflight
	}
	if c.PeerLimits.QueueTimeout == 0 {
		// A queued asker hears no liveness: it must get its answer
		// before it suspects this member.
		c.PeerLimits.QueueTimeout = c.PeerTimeout / 2
	}
	c.PeerLimits.Name = "peer"
	c.PeerLimits = c.PeerLimits.WithDefaults()
	c.Seeds = append([]string(nil), c.Seeds...)
	return c
}

// Validate reports the first problem in c, naming the field, such as
// "cluster.seeds[1]: missing port". Call it on the result of WithDefaults.
// It does not read SecretFile or the TLS files; [New] does (and
// [TLSConfig.Check]).
func (c Config) Validate() error {
	if c.Name == "" {
		return errors.New("cluster.name: required")
	}
	if err := checkName(c.Name); err != nil {
		return fmt.Errorf("cluster.name: %w", err)
	}
	if len(c.Zone) > maxZoneLen {
		return fmt.Errorf("cluster.zone: longer than %d bytes", maxZoneLen)
	}
	for _, r := range c.Zone {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("cluster.zone: control character in %q", c.Zone)
		}
	}
	if c.Weight < 0 || c.Weight > ring.MaxWeight {
		return fmt.Errorf("cluster.weight: %d out of range [1, %d]", c.Weight, ring.MaxWeight)
	}
	if err := checkIPPort(c.GossipListen, true); err != nil {
		return fmt.Errorf("cluster.gossip_listen: %w", err)
	}
	if c.Advertise != "" {
		if err := checkIPPort(c.Advertise, false); err != nil {
			return fmt.Errorf("cluster.advertise: %w", err)
		}
	}
	if _, err := splitHostPort(c.PeerListen, true); err != nil {
		return fmt.Errorf("cluster.peer_listen: %w", err)
	}
	for i, s := range c.Seeds {
		host, err := splitHostPort(s, false)
		if err == nil && host == "" {
			err = errors.New("missing host")
		}
		if err != nil {
			return fmt.Errorf("cluster.seeds[%d]: %w", i, err)
		}
	}
	if c.SeedDNS != "" {
		host, err := splitHostPort(c.SeedDNS, false)
		if err == nil && host == "" {
			err = errors.New("missing name")
		}
		if err != nil {
			return fmt.Errorf("cluster.seed_dns: %w", err)
		}
	}
	switch {
	case c.Secret != "" && c.SecretFile != "":
		return errors.New("cluster.secret_file: set together with cluster.secret (use one)")
	case c.Secret == "" && c.SecretFile == "":
		return errors.New("cluster.secret: required (or cluster.secret_file)")
	case c.Secret != "" && len(c.Secret) < minSecretLen:
		return fmt.Errorf("cluster.secret: too short (%d bytes, at least %d)", len(c.Secret), minSecretLen)
	}
	if err := c.TLS.validate(); err != nil {
		return err
	}
	if _, ok := presetFor(c.Preset); !ok {
		return fmt.Errorf("cluster.preset: unknown preset %q (want %q or %q)", c.Preset, PresetLAN, PresetLocal)
	}
	switch {
	case c.MaxClockSkew < 0:
		return errors.New("cluster.max_clock_skew: negative")
	case c.PeerTimeout < 0:
		return errors.New("cluster.peer_timeout: negative")
	case c.SuspectFor < 0:
		return errors.New("cluster.suspect_for: negative")
	case c.Replicas < 0 || c.Replicas > 3:
		return fmt.Errorf("cluster.replicas: %d (want 1, 2 or 3)", c.Replicas)
	}
	if err := c.PeerLimits.Validate(); err != nil {
		return fmt.Errorf("cluster.peer_limits.%w", err)
	}
	if c.PeerTimeout > 0 && c.PeerLimits.QueueTimeout >= c.PeerTimeout {
		return fmt.Errorf("cluster.peer_limits.queue_timeout: %v must be shorter than cluster.peer_timeout %v (a queued asker hears no liveness)", c.PeerLimits.QueueTimeout, c.PeerTimeout)
	}
	return nil
}

// checkName accepts member names: letters, digits, '.', '_' and '-'. They
// travel in a header and are compared with Cache-Status entries, so
// separators and white space are kept out.
func checkName(name string) error {
	if name == "" {
		return errors.New("empty")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("longer than %d bytes", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		if !nameByte(name[i]) {
			return fmt.Errorf("invalid character %q in %q (letters, digits, '.', '_' and '-' only)", name[i], name)
		}
	}
	return nil
}

func nameByte(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || b == '.' || b == '_' || b == '-'
}

// splitHostPort checks a host:port and returns its host. Port 0 is
// accepted only for listeners.
func splitHostPort(addr string, listen bool) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return "", errors.New("missing port")
		}
		return "", err
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return "", fmt.Errorf("invalid port %q", port)
	}
	if n == 0 && !listen {
		return "", errors.New("port 0")
	}
	return host, nil
}

// checkIPPort checks an IP:port; memberlist binds and advertises IPs, not
// names. An empty host means every address.
func checkIPPort(addr string, listen bool) error {
	host, err := splitHostPort(addr, listen)
	if err != nil {
		return err
	}
	if host == "" && listen {
		return nil
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Errorf("host %q is not an IP address", host)
	}
	return nil
}
