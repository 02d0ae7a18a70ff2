package cluster

import (
	"time"

	"github.com/hashicorp/memberlist"
)

// Names of the presets (Config.Preset).
const (
	// PresetLAN is for a region on a real network: memberlist's LAN
	// defaults, which detect a dead member in a few seconds without
	// mistaking a slow one for dead.
	PresetLAN = "lan"
	// PresetLocal is for members on one machine's loopback (tests and
	// `meridian up`): a dead member leaves the ring within about 2 s.
	PresetLocal = "local"
)

// preset is a named failure-detection tuning.
type preset struct {
	// memberlist returns a fresh memberlist config to fill in.
	memberlist func() *memberlist.Config
	// joinRetry is the wait between attempts to join the seeds while this
	// member is alone.
	joinRetry time.Duration
	// settle is how long a membership change waits for others before the
	// ring is rebuilt, so that a burst (a region starting, a member
	// flapping) costs one build, or none if it cancels out.
	settle time.Duration
	// rejoin is the wait between joins, once in the region, through the
	// known addresses of members not seen alive (see joinLoop).
	rejoin time.Duration
	// forget is how long the address of a member no longer seen is
	// still joined.
	forget time.Duration
	// handoffWindow is how long after a membership change a key's owner
	// that misses asks the key's previous holders before upstream.
	handoffWindow time.Duration
}

// presetFor returns the tuning Config.Preset names.
func presetFor(name string) (preset, bool) {
	switch name {
	case PresetLAN:
		return lanPreset(), true
	case PresetLocal:
		return localPreset(), true
	}
	return preset{}, false
}

func lanPreset() preset {
	return preset{
		memberlist: func() *memberlist.Config {
			// memberlist's LAN defaults give their reasons in
			// memberlist.DefaultLANConfig: 1s probes with a 500ms
			// timeout, suspicion for 4·log(N+1) probe intervals, 200ms
			// gossip to 3 members, a full state sync every 30s.
			c := memberlist.DefaultLANConfig()
			// A restarted member (a rescheduled pod: same name, new
			// address) may take its name back 5s after it was
			// declared dead; memberlist's default (0) never lets it.
			// The wait keeps two live processes from trading a name.
			c.DeadNodeReclaimTime = 5 * time.Second
			return c
		},
		// Seeds that are not up yet (a region starting) are tried
		// every 2s: cheap, and far below the time a region takes to
		// start.
		joinRetry: 2 * time.Second,
		// Half a second folds a rolling start's joins into few builds
		// and is small next to the seconds failure detection takes.
		settle: 500 * time.Millisecond,
		// A split heals within 10s of the restarted member being up:
		// less than a rolling restart's pause between members, for one
		// connection attempt per missing member every 10s.
		rejoin: 10 * time.Second,
		// A member gone for an hour is gone (scaled down, replaced);
		// a restart or a network partition is shorter.
		forget: time.Hour,
		// A rolling restart of a region takes minutes; its keys are
		// asked for again within them, or they are cold.
		handoffWindow: 10 * time.Minute,
	}
}

func localPreset() preset {
	return preset{
		memberlist: func() *memberlist.Config {
			// Start from memberlist's loopback defaults (1s stream
			// timeout, one indirect check, 15s full sync) and detect
			// failures faster: on loopback an ack takes microseconds.
			c := memberlist.DefaultLocalConfig()
			// Probe a member every 200ms: with a handful of members
			// each is probed several times a second.
			c.ProbeInterval = 200 * time.Millisecond
			// An ack later than 100ms means the member is gone or
			// stalled; it leaves headroom for a busy CI machine.
			c.ProbeTimeout = 100 * time.Millisecond
			// Suspect for 5·max(1, log10 N) probe intervals (1s with
			// few members) before declaring dead: with a probe round
			// and gossip a dead member leaves the ring within ~1.5s,
			// while a live member that was merely slow to ack (a
			// loaded CI machine, the race detector) has a second to
			// refute. At 2 (400ms) such members flapped in and out of
			// the ring under load, moving keys each time.
			c.SuspicionMult = 5
			// Spread joins, suspicions and deaths every 50ms.
			c.GossipInterval = 50 * time.Millisecond
			// A full state sync every 2s repairs anything the gossip
			// missed, cheaply with few members.
			c.PushPullInterval = 2 * time.Second
			// A restarted member takes its name back as soon as the
			// old one is dead: tests restart nodes at once.
			c.DeadNodeReclaimTime = time.Millisecond
			return c
		},
		// Try the seeds every 100ms: they are on this machine.
		joinRetry: 100 * time.Millisecond,
		// Members on one machine join within ~100ms of each other;
		// waiting that long costs little of the ~2s detection budget.
		settle: 100 * time.Millisecond,
		// Loopback connection attempts cost microseconds: heal within
		// a second of a restart, well inside what tests wait for.
		rejoin: time.Second,
		// Tests and `meridian up` restart members within seconds.
		forget:        10 * time.Minute,
		handoffWindow: 10 * time.Minute,
	}
}
