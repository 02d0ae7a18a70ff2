package listen_test

import (
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/meridiancdn/meridian/edge"
)

// The differential test of the HTTPS listener's two HTTP/2 fronts (issue
// 21): server.front "nethttp" serves HTTP/2 with x/net's standard server
// alone; "fast" with the lean front, which answers plain fresh hits
// itself and hands every other stream to that same standard server. A
// hand-written protocol loop is where request smuggling, flow-control
// and hostile-client bugs hide, so the same client frame sequences,
// valid and hostile, go to both, and what each server did is compared:
// per stream its header blocks (1xx, final, trailers), body and end
// (END_STREAM or the RST_STREAM code), per connection its SETTINGS, ACKs,
// GOAWAY (code, last stream) and whether it closed, and what reached
// the origin.
//
// The pieces: h2diff_env_test.go makes the two servers (each with its
// own edge.Handler and origin, answering alike, on one frozen clock) and
// warms them alike; h2diff_ops_test.go is the client script (ops, and
// their bytecode for the fuzz target); h2diff_client_test.go is the raw
// client (x/net's Framer and hpack over tls.Dial with ALPN h2) that plays
// a script and records an outcome; h2diff_compare_test.go compares two
// outcomes, with every tolerated difference an explicit, numbered rule.
//
// TestH2Differential plays named sequences; FuzzH2Differential plays
// sequences decoded from its input (its seeds are the table's);
// TestH2DifferentialSeesADifference proves the comparison fails when the
// two servers differ (a test-only hook makes them).
//
// Not repeated here (they test one server's defences, on both fronts
// where the front matters), in package edge: the rapid-reset guard
// (TestHTTP2RapidResetClosesConnection, TestHTTP2OccasionalResetsTolerated,
// TestAttackHTTP2RapidReset), the send timeout per stream
// (TestStreamWithoutFlowControlCreditIsReset), hostile fields over
// HTTP/2 and HTTP/3 (TestHostileItemsOverH2H3,
// TestHostileHostPoisoningH2H3, TestHostileForwardedH2H3), one object over
// every protocol (TestSameObjectOverHTTP1HTTP2HTTP3); in edge/node,
// GOAWAY on drain (TestDrainClosesHTTP2ConnectionsWithGoAway).

// Paths (diffPaths) and variants (diffVariants) by name, for the table.
const (
	pSmall = iota
	pLarge
	pVary
	p204
	pNoStore
	pCookie
	pMiss
	pHints
	p404
	pEtagless
	pSlow
	pRedirect
	pWindow
	pEmpty
	pNoStoreLarge
)

const (
	vGet = iota
	vHead
	vIfNoneMatch
	vIfModifiedSince
	vRange
	vRangeUnsatisfiable
	vGzip
	vIfNoneMatchOther
	vRangeTwoParts
	vAuthorization
	vCookieCrumbs
	vTETrailers
	vNoCache
	vAuthorityPort
	vHostField
	vSplitEnd
)

// diffSequence is one named sequence of the table.
type diffSequence struct {
	name string
	ops  []h2op
	// statuses, if set, are the final statuses the standard server must
	// give the streams the client opened, in stream order, each ended
	// with END_STREAM on a connection it keeps open: the sequence tests
	// what it says it does.
	statuses []string
	// check, if set, says what is wrong with the standard server's
	// outcome for what the sequence means to test ("" if nothing).
	check func(o *h2Outcome) string
	// budget, if set, bounds a run in place of sequenceBudget.
	budget time.Duration
}

func settings(id http2.SettingID, v uint32) h2op { return opOf(opSettings, byte(id), v) }

// diffSequences are the table: valid sequences first, then hostile ones.
// A sequence that moves a large answer through small windows keeps its
// round trips few: server.send_timeout (500 ms here) holds the whole of
// a handler's write, and a loaded machine must not trip it.
func diffSequences() []diffSequence {
	wait := opOf(opWait, 0, 0)
	seqs := []diffSequence{
		{name: "one hit", ops: []h2op{get(pSmall, vGet)}, statuses: []string{"200"}},
		{name: "10 concurrent hits on one connection", ops: []h2op{
			get(pSmall, vGet), get(pLarge, vGet), get(pWindow, vGet), get(pSmall, vGet), get(pEtagless, vGet),
			get(pSmall, vGet), get(pEmpty, vGet), get(pSmall, vGet), get(pLarge, vGet), get(pSmall, vGet)},
			statuses: strings.Fields("200 200 200 200 200 200 200 200 200 200")},
		{name: "hits interleaved with misses and a POST", ops: []h2op{
			get(pSmall, vGet), get(pMiss, vGet), opOf(opPost, 0, 3000), get(pEtagless, vGet),
			get(pMiss, vGet), get(pNoStore, vGet), get(pSmall, vGet), wait, get(pMiss, vGet)},
			statuses: strings.Fields("200 200 200 200 200 200 200 200")},
		{name: "a miss, then the same object hit", ops: []h2op{get(pMiss, vGet), wait, get(pMiss, vGet), get(pMiss, vHead)},
			statuses: strings.Fields("200 200 200"),
			check: func(o *h2Outcome) string {
				if len(o.Origin) != 1 {
					return fmt.Sprintf("the origin saw %q, want the miss alone", o.Origin)
				}
				return ""
			}},
		{name: "HEAD hit", ops: []h2op{get(pSmall, vHead), get(pLarge, vHead), get(pEmpty, vHead)}, statuses: strings.Fields("200 200 200")},
		{name: "conditional hit", ops: []h2op{get(pSmall, vIfNoneMatch), get(pSmall, vIfModifiedSince),
			get(pSmall, vIfNoneMatchOther), get(pEtagless, vIfModifiedSince), get(pLarge, vIfNoneMatch)},
			statuses: strings.Fields("304 304 200 304 304")},
		{name: "Range hit", ops: []h2op{get(pSmall, vRange), get(pLarge, vRange), get(pSmall, vRangeUnsatisfiable),
			get(pSmall, vRangeTwoParts), get(pEmpty, vRange)}},
		{name: "a hit larger than the window, with WINDOW_UPDATEs", ops: []h2op{get(pLarge, vGet), get(pWindow, vGet)},
			statuses: strings.Fields("200 200")},
		{name: "client lowers SETTINGS_INITIAL_WINDOW_SIZE mid-connection", ops: []h2op{
			get(pSmall, vGet), wait, settings(http2.SettingInitialWindowSize, 4096), get(pWindow, vGet), get(pSmall, vGet),
			wait, settings(http2.SettingInitialWindowSize, 1<<20), get(pLarge, vGet)},
			statuses: strings.Fields("200 200 200 200")},
		{name: "client lowers SETTINGS_INITIAL_WINDOW_SIZE while a hit is sent", ops: []h2op{
			get(pLarge, vGet), settings(http2.SettingInitialWindowSize, 16384), get(pWindow, vGet)},
			statuses: strings.Fields("200 200")},
		{name: "client lowers SETTINGS_HEADER_TABLE_SIZE mid-connection", ops: []h2op{
			get(pSmall, vGet), get(pEtagless, vGet), wait, settings(http2.SettingHeaderTableSize, 0), wait,
			get(pSmall, vGet), get(pVary, vGet), wait, settings(http2.SettingHeaderTableSize, 100), wait, get(pSmall, vGet)},
			statuses: strings.Fields("200 200 200 200 200")},
		{name: "client lowers then raises SETTINGS_HEADER_TABLE_SIZE between answers", ops: []h2op{
			get(pSmall, vGet), get(pEtagless, vGet), wait, settings(http2.SettingHeaderTableSize, 48), settings(http2.SettingHeaderTableSize, 1<<20),
			wait, get(pSmall, vIfModifiedSince), get(pSmall, vGet)},
			statuses: strings.Fields("200 200 304 200")},
		{name: "PING", ops: []h2op{opOf(opPing, 0, 42), get(pSmall, vGet), opOf(opPing, 0, 43)}, statuses: []string{"200"}},
		{name: "Vary hit", ops: []h2op{get(pVary, vGet), get(pVary, vGzip)}, statuses: strings.Fields("200 200")},
		{name: "204, empty body, redirect and 404 hits", ops: []h2op{get(p204, vGet), get(pEmpty, vGet), get(pRedirect, vGet), get(p404, vGet)},
			statuses: strings.Fields("204 200 301 404")},
		{name: "uncacheable answers", ops: []h2op{get(pNoStore, vGet), get(pCookie, vGet), get(pNoStoreLarge, vGet), get(pNoStore, vHead)},
			statuses: strings.Fields("200 200 200 200")},
		{name: "POST with a body", ops: []h2op{opOf(opPost, 0, 100<<10), opOf(opPost, 1, 5000), opOf(opPost, 0, 0)},
			statuses: strings.Fields("200 200 200")},
		{name: "POST with trailers", ops: []h2op{opOf(opPost, 8, 3000), get(pSmall, vGet)}, statuses: strings.Fields("200 200")},
		{name: "POST of no body with trailers", ops: []h2op{opOf(opPost, 8, 0), get(pSmall, vGet)}},
		{name: "POST whose body is shorter than its Content-Length", ops: []h2op{opOf(opPost, 2, 3000), get(pSmall, vGet)}},
		{name: "POST whose body is longer than its Content-Length", ops: []h2op{opOf(opPost, 4, 3000), get(pSmall, vGet)}},
		{name: "POST with trailers whose body is longer than its Content-Length", ops: []h2op{opOf(opPost, 4|8, 3000), get(pSmall, vGet)}},
		{name: "POST with trailers whose body is shorter than its Content-Length", ops: []h2op{opOf(opPost, 2|8, 3000), get(pSmall, vGet)}},
		{name: "HEADERS again on a stream whose request ended", ops: []h2op{opOf(opPost, 0, 1000), wait, opOf(opHeadersAt, pSmall, 1), get(pSmall, vGet)}},
		{name: "1xx: 103 Early Hints", ops: []h2op{get(pHints, vGet)}, statuses: []string{"200"},
			check: func(o *h2Outcome) string {
				if s := o.Streams[1]; s == nil || len(s.Heads) != 2 || !contains(s.Heads[0], ":status: 103") {
					return "no 103 before the answer"
				}
				return ""
			}},
		{name: "END_STREAM on an empty DATA frame", ops: []h2op{get(pSmall, vSplitEnd), get(pNoStore, vSplitEnd)}, statuses: strings.Fields("200 200")},
		{name: "request variants on a hit", ops: []h2op{get(pSmall, vAuthorization), get(pSmall, vCookieCrumbs), get(pSmall, vTETrailers),
			get(pSmall, vNoCache), get(pSmall, vAuthorityPort), get(pSmall, vHostField), get(pSmall, vGzip)}},
		{name: "a client that never opens its window (send timeout)", ops: []h2op{opOf(opCredit, 1, 0), get(pLarge, vGet)},
			check: func(o *h2Outcome) string {
				if s := o.Streams[1]; s == nil || s.End != "RST_STREAM INTERNAL_ERROR" || len(s.Body) != 65535 {
					return "the stalled stream was not reset after its first window"
				}
				return ""
			}},
		{name: "a client that closes its window right after asking for a hit", ops: []h2op{get(pSmall, vGet), settings(http2.SettingInitialWindowSize, 0), get(pSmall, vGet)}},
		{name: "a client whose initial window is 0 (send timeout)", ops: []h2op{settings(http2.SettingInitialWindowSize, 0), wait, get(pSmall, vGet)},
			check: func(o *h2Outcome) string {
				if s := o.Streams[1]; s == nil || s.End != "RST_STREAM INTERNAL_ERROR" {
					return "the stream without credit was not reset"
				}
				return ""
			}},

		// Hostile.
		{name: "rapid reset (HEADERS+RST_STREAM repeated)", ops: []h2op{get(pSmall, vGet), wait, opOf(opRapidReset, 0, 250), get(pSmall, vGet)},
			check: func(o *h2Outcome) string {
				if !o.Closed || o.GoAways != 0 {
					return "the rapid-reset guard did not close the connection"
				}
				return ""
			}},
		{name: "more streams than SETTINGS_MAX_CONCURRENT_STREAMS", ops: append(append([]h2op{wait, wait},
			repeat(251, get(pSlow, vGet))...), get(pSmall, vGet), opOf(opReset, selAll, uint32(http2.ErrCodeCancel))),
			check: func(o *h2Outcome) string {
				// x/net's server queues the refusal behind the run's last
				// PING's ACK now and then (its write scheduler sends
				// control frames first; about 1 run in 4 here), so the
				// client may reset stream 501 itself before the refusal
				// comes: then it must not have been answered either.
				s := o.Streams[501]
				if s == nil || s.End != "RST_STREAM PROTOCOL_ERROR" && !(s.ClientReset && s.End == "" && len(s.Heads) == 0) {
					return fmt.Sprintf("the 251st stream was neither refused nor left unanswered: %+v", s)
				}
				return ""
			}},
		{name: "CONTINUATION flood", ops: []h2op{opOf(opContinuationFlood, 0, 2000)}},
		{name: "CONTINUATION flood of empty frames", ops: []h2op{opOf(opContinuationFlood, 1, 2000)}},
		{name: "CONTINUATION flood that ends", ops: []h2op{opOf(opContinuationFlood, 2, 100), get(pSmall, vGet)}},
		{name: "DATA on a closed stream", ops: []h2op{get(pSmall, vGet), wait, opOf(opData, selLast, 10), get(pSmall, vGet)}},
		{name: "DATA on a half-closed (remote) stream", ops: []h2op{get(pSlow, vGet), opOf(opData, selLast, 10), opOf(opReset, selLast, uint32(http2.ErrCodeCancel))}},
		{name: "empty DATA on a half-closed (remote) stream", ops: []h2op{get(pSlow, vRangeUnsatisfiable), opOf(opData, selLast, 0), get(pSmall, vGet)},
			budget: time.Second, // the lean front left the stream open (known difference 6, fixed in 6dcebb0)
			check: func(o *h2Outcome) string {
				if s := o.Streams[1]; s == nil || s.End != "RST_STREAM STREAM_CLOSED" {
					return "the stream was not reset STREAM_CLOSED"
				}
				return ""
			}},
		{name: "empty DATA on a half-closed (remote) relayed stream that answers", ops: []h2op{get(pNoStore, vGet), opOf(opData, selLast, 0)}},
		{name: "empty DATA on a stream below the client's highest, never opened", ops: []h2op{opOf(opHeadersAt, pSmall, 11), wait, opOf(opData, 4, 0), get(pSmall, vGet)}},
		{name: "empty DATA on an idle stream", ops: []h2op{opOf(opData, selIdle, 0), get(pSmall, vGet)}},
		{name: "empty DATA on stream 0", ops: []h2op{opOf(opData, selZero, 0), get(pSmall, vGet)}},
		{name: "empty DATA on a closed stream", ops: []h2op{get(pSmall, vGet), wait, opOf(opData, selLast, 0), get(pSmall, vGet)}},
		{name: "DATA on an idle stream", ops: []h2op{opOf(opData, selIdle, 10)}},
		{name: "DATA on an even (server-initiated, idle) stream below the client's last", ops: []h2op{get(pSmall, vGet), get(pSmall, vGet), wait, opOf(opRawFrame, 0x0, 0x00_02_0010), get(pSmall, vGet)}},
		{name: "WINDOW_UPDATE on an even idle stream below the client's last", ops: []h2op{get(pSmall, vGet), get(pSmall, vGet), wait, opOf(opRawFrame, 0x8, 0x00_02_0004), get(pSmall, vGet)}},
		{name: "RST_STREAM on an even idle stream below the client's last", ops: []h2op{get(pSmall, vGet), get(pSmall, vGet), wait, opOf(opRawFrame, 0x3, 0x00_02_0004), get(pSmall, vGet)}},
		{name: "PRIORITY on an even idle stream below the client's last", ops: []h2op{get(pSmall, vGet), get(pSmall, vGet), wait, opOf(opRawFrame, 0x2, 0x00_02_0005), get(pSmall, vGet)},
			statuses: strings.Fields("200 200 200")},
		{name: "DATA on stream 0", ops: []h2op{opOf(opData, selZero, 10)}},
		{name: "stream ID going backwards", ops: []h2op{get(pSmall, vGet), get(pSmall, vGet), wait, opOf(opHeadersAt, pSmall, 1)}},
		{name: "stream ID going backwards, unanswered", ops: []h2op{opOf(opHeadersAt, pSmall, 5), opOf(opHeadersAt, pSmall, 3)}},
		{name: "even stream ID", ops: []h2op{opOf(opHeadersAt, pSmall, 2)}},
		{name: "HEADERS on stream 0", ops: []h2op{opOf(opHeadersAt, pSmall, 0)}},
		{name: "WINDOW_UPDATE overflow (connection)", ops: []h2op{get(pSmall, vGet), wait,
			opOf(opWindowUpdate, selZero, 0x7fffffff), opOf(opWindowUpdate, selZero, 0x7fffffff), get(pSmall, vGet)}},
		{name: "WINDOW_UPDATE overflow (stream)", ops: []h2op{get(pSlow, vGet),
			opOf(opWindowUpdate, selLast, 0x7fffffff), opOf(opWindowUpdate, selLast, 0x7fffffff), get(pSmall, vGet)}},
		{name: "zero-increment WINDOW_UPDATE (connection)", ops: []h2op{opOf(opWindowUpdate, selZero, 0), get(pSmall, vGet)}},
		{name: "zero-increment WINDOW_UPDATE (stream)", ops: []h2op{get(pSlow, vGet), opOf(opWindowUpdate, selLast, 0), get(pSmall, vGet)}},
		{name: "WINDOW_UPDATE on an idle stream", ops: []h2op{opOf(opWindowUpdate, selIdle, 100), get(pSmall, vGet)}},
		{name: "SETTINGS_ENABLE_PUSH 2", ops: []h2op{settings(http2.SettingEnablePush, 2), get(pSmall, vGet)}},
		{name: "SETTINGS_INITIAL_WINDOW_SIZE 2^31", ops: []h2op{settings(http2.SettingInitialWindowSize, 1<<31), get(pSmall, vGet)}},
		{name: "SETTINGS_INITIAL_WINDOW_SIZE overflowing an open stream's window", ops: []h2op{get(pSlow, vGet),
			opOf(opWindowUpdate, selLast, 0x7fffffff-65535), settings(http2.SettingInitialWindowSize, 65536),
			opOf(opReset, selLast, uint32(http2.ErrCodeCancel)), get(pSmall, vGet)}},
		{name: "SETTINGS_MAX_FRAME_SIZE too small", ops: []h2op{settings(http2.SettingMaxFrameSize, 100), get(pSmall, vGet)}},
		{name: "SETTINGS_MAX_FRAME_SIZE too large", ops: []h2op{settings(http2.SettingMaxFrameSize, 1<<24), get(pSmall, vGet)}},
		{name: "SETTINGS_MAX_FRAME_SIZE raised", ops: []h2op{settings(http2.SettingMaxFrameSize, 1<<20), wait, get(pLarge, vGet)}},
		{name: "SETTINGS_NO_RFC7540_PRIORITIES 2", ops: []h2op{settings(http2.SettingNoRFC7540Priorities, 2), get(pSmall, vGet)}},
		{name: "SETTINGS_ENABLE_CONNECT_PROTOCOL 2", ops: []h2op{settings(http2.SettingEnableConnectProtocol, 2), get(pSmall, vGet)}},
		{name: "SETTINGS with an unknown ID", ops: []h2op{settings(0, 7), settings(7, 1), get(pSmall, vGet)}},
		{name: "SETTINGS_MAX_CONCURRENT_STREAMS 0 from the client", ops: []h2op{settings(http2.SettingMaxConcurrentStreams, 0), get(pSmall, vGet)}},
		{name: "SETTINGS ACK with a payload", ops: []h2op{opOf(opRawFrame, 0x4, 0x01_00_0006), get(pSmall, vGet)}},
		{name: "SETTINGS on a stream", ops: []h2op{opOf(opRawFrame, 0x4, 0x00_01_0006)}},
		{name: "frames before the preface", ops: []h2op{opOf(opPreface, 2, 0), get(pSmall, vGet)}},
		{name: "garbage preface", ops: []h2op{opOf(opPreface, 1, 0), get(pSmall, vGet)}},
		{name: "HEADERS before SETTINGS", ops: []h2op{opOf(opPreface, 3, 0), get(pSmall, vGet)}},
		{name: "SETTINGS ACK before SETTINGS", ops: []h2op{opOf(opPreface, 4, 0), get(pSmall, vGet)}},
		{name: "the preface again mid-connection", ops: []h2op{get(pSmall, vGet), wait, opOf(opPreface, 0, 0)}},
		{name: "PRIORITY on stream 0", ops: []h2op{opOf(opPriority, selZero, 1), get(pSmall, vGet)}},
		{name: "PRIORITY depending on itself", ops: []h2op{opOf(opPriority, selIdle, 1), get(pSmall, vGet)}},
		{name: "PRIORITY making an open stream depend on itself", ops: []h2op{get(pSmall, vIfNoneMatch), opOf(opPriority, selLast, 1), get(pSmall, vGet)}},
		{name: "PRIORITY on an idle stream", ops: []h2op{opOf(opPriority, 10, 0), get(pSmall, vGet), get(pSmall, vGet)}},
		{name: "RST_STREAM on an idle stream", ops: []h2op{opOf(opReset, selIdle, 8), get(pSmall, vGet)}},
		{name: "RST_STREAM on stream 0", ops: []h2op{opOf(opReset, selZero, 8)}},
		{name: "RST_STREAM after a hit", ops: []h2op{get(pSmall, vGet), wait, opOf(opReset, selLast, 8), get(pSmall, vGet)},
			statuses: strings.Fields("200 200")},
		{name: "unsolicited PING ACK", ops: []h2op{opOf(opPing, 1, 7), get(pSmall, vGet)}, statuses: []string{"200"}},
		{name: "PING on a stream", ops: []h2op{opOf(opRawFrame, 0x6, 0x00_01_0008)}},
		{name: "unknown frame type", ops: []h2op{opOf(opRawFrame, 0xfa, 0x00_01_0010), get(pSmall, vGet)}, statuses: []string{"200"}},
		{name: "PUSH_PROMISE from the client", ops: []h2op{get(pSmall, vGet), opOf(opRawFrame, 0x5, 0x04_01_0010)}},
		{name: "HEADERS with an undecodable block", ops: []h2op{opOf(opRawFrame, 0x1, 0x05_01_0014)}},
		{name: "a frame larger than SETTINGS_MAX_FRAME_SIZE", ops: []h2op{get(pSmall, vGet), wait, opOf(opRawFrame, 0x0, 0x00_01_4001)}},
		{name: "CONTINUATION without HEADERS", ops: []h2op{opOf(opRawFrame, 0x9, 0x04_01_0004)}},
	}
	seqs = append(seqs, diffSequence{name: "many fields past the header list limit", ops: []h2op{bad("many fields", 2368), get(pSmall, vGet)},
		budget: time.Second, // the lean front left the stream open (known difference 7, fixed in 7336ac6)
		check: func(o *h2Outcome) string {
			if s := o.Streams[1]; s == nil || finalStatus(s) != "431" {
				return "no 431"
			}
			return ""
		}})
	for _, b := range badRequests {
		seqs = append(seqs, diffSequence{name: "malformed request: " + b.name, ops: []h2op{bad(b.name, 0), get(pSmall, vGet)}})
	}
	return seqs
}

func contains(lines []string, l string) bool {
	for _, x := range lines {
		if x == l {
			return true
		}
	}
	return false
}

// sequenceBudget bounds one run of a table sequence (most end in
// milliseconds; those that wait for a send timeout take about
// sendTimeout).
const sequenceBudget = 3 * time.Second

// fuzzBudget bounds one run of a fuzz input: the fuzzer's runs must be
// short, and a sequence that ends after it ends alike on both servers
// (GaveUp).
const fuzzBudget = 300 * time.Millisecond

// confirmBudget bounds the replay of a run whose servers differed: long
// enough that a run both servers finish is finished by both, on a loaded
// machine and under the race detector too. CI failed once on the 251
// slow streams of "more streams than SETTINGS_MAX_CONCURRENT_STREAMS"
// with the lean front still answering after 3 s, while another heavy
// job shared the machine; alone, it finishes in about half a second. A
// server that really hangs is still caught, 10 s later.
const confirmBudget = 10 * time.Second

// finalStatuses are the final statuses of the streams the client opened,
// in stream order, with "!" and the end where a stream did not end with
// END_STREAM.
func finalStatuses(o *h2Outcome) []string {
	var ids []uint32
	for id, s := range o.Streams {
		if s.Opened {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var out []string
	for _, id := range ids {
		s := o.Streams[id]
		st := "none"
		for _, h := range s.Heads {
			for _, l := range h {
				if v, ok := strings.CutPrefix(l, ":status: "); ok && !strings.HasPrefix(v, "1") {
					st = v
				}
			}
		}
		if s.End != "END_STREAM" {
			st += "!" + s.End
		}
		out = append(out, st)
	}
	return out
}

func TestH2Differential(t *testing.T) {
	p := newDiffPair(t, pairOptions{})
	for _, seq := range diffSequences() {
		t.Run(seq.name, func(t *testing.T) {
			budget := sequenceBudget
			if seq.budget != 0 {
				budget = seq.budget
			}
			a, b, err := p.run(seq.ops, budget)
			if err != nil {
				t.Fatal(err)
			}
			if seq.statuses != nil {
				got := finalStatuses(a)
				if strings.Join(got, " ") != strings.Join(seq.statuses, " ") || a.GoAways != 0 || a.Closed || a.GaveUp {
					t.Errorf("the standard server (%s) does not do what the sequence means: statuses %v (want %v), %s, closed %v (%s), gave up %v",
						p.a.front, got, seq.statuses, orNone(a.GoAway), a.Closed, a.CloseErr, a.GaveUp)
				}
			}
			if seq.check != nil {
				if msg := seq.check(a); msg != "" {
					t.Errorf("the standard server (%s): %s", p.a.front, msg)
				}
			}
			if d := p.confirm(t, seq.ops, a, b); d != "" {
				t.Errorf("the fronts differ on %q:\n%s\nfirst difference: %s", seq.name, opsString(seq.ops), d)
			}
		})
	}
}

func FuzzH2Differential(f *testing.F) {
	for _, seq := range diffSequences() {
		f.Add(encodeOps(seq.ops))
	}
	p := newDiffPair(f, pairOptions{})
	f.Fuzz(func(t *testing.T, in []byte) {
		ops := decodeOps(in)
		a, b, err := p.run(ops, fuzzBudget)
		if err != nil {
			t.Fatal(err)
		}
		if d := p.confirm(t, ops, a, b); d != "" {
			t.Errorf("the fronts differ on:\n%s\nfirst difference: %s", opsString(ops), d)
		}
	})
}

// Runs of the differential harness do not share a slow fill: each run's
// /slow is its own key, fetched from the origin by that run. CI failed
// twice on FuzzH2Differential's seed#31 ("more streams than
// SETTINGS_MAX_CONCURRENT_STREAMS", which decodeOps cuts to 46 /slow
// streams and no reset): a /slow fill begun by an earlier run, on one
// server sooner than on the other, ran into the origin's 10 s
// try_timeout within the replay there, and its 504 was remembered, for
// good on the fake clock. Now no origin timeout falls within a run (the
// sites' are a minute, against confirmBudget's 10 s) and no run joins
// another's fill.
func TestH2DifferentialRunsDoNotShareSlowFills(t *testing.T) {
	p := newDiffPair(t, pairOptions{})
	ops := []h2op{get(pSlow, vGet), get(pSlow, vGet)}
	var paths []string
	for range 2 {
		a, b, err := p.run(ops, 300*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range []*h2Outcome{a, b} {
			if !o.GaveUp || len(o.Origin) != 1 {
				t.Fatalf("a run of two /slow streams: gave up %v, origin requests %v; want it still waiting, after one origin request of its own", o.GaveUp, o.Origin)
			}
		}
		paths = append(paths, a.Streams[1].Path)
	}
	if paths[0] == paths[1] {
		t.Fatalf("two runs asked for /slow as %q: the second may join the first's fill", paths[0])
	}
	if confirmBudget >= time.Minute {
		t.Fatalf("confirmBudget %v reaches the sites' origin timeouts (a minute)", confirmBudget)
	}
}

// confirm compares a and b, the outcomes of ops; a difference is played
// again, with confirmBudget, and reported if it is seen again: on this
// shared machine a run's short budget can end on one side only, or a
// race inside one server can go the other way once (a difference seen
// once is logged).
func (p *diffPair) confirm(t *testing.T, ops []h2op, a, b *h2Outcome) string {
	t.Helper()
	d, known := diffOutcomes(p.a.front, p.b.front, ops, a, b)
	for _, k := range known {
		if p.firstSeen(k) {
			t.Logf("%s (logged once)", k)
		}
	}
	if d == "" {
		return ""
	}
	a2, b2, err := p.run(ops, confirmBudget)
	if err != nil {
		t.Fatal(err)
	}
	d2, _ := diffOutcomes(p.a.front, p.b.front, ops, a2, b2)
	if d2 == "" {
		t.Logf("a difference seen once, not when played again:\n%s\n%s", opsString(ops), d)
	}
	return d2
}

// dropETag is a handler wrapper that drops the ETag of the answers to
// path: a difference made on purpose.
func dropETag(path string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == path {
				w = &etagDropper{ResponseWriter: w}
			}
			next.ServeHTTP(w, r)
		})
	}
}

type etagDropper struct {
	http.ResponseWriter
	wrote bool
}

func (w *etagDropper) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		w.Header().Del("Etag")
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *etagDropper) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *etagDropper) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// abortOn is a handler wrapper that aborts the answers to path (the
// server resets the stream: RST_STREAM INTERNAL_ERROR) where the other
// side answers.
func abortOn(path string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == path {
				panic(http.ErrAbortHandler)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// The harness can fail: with the standard front on both sides, a hook
// on one side that drops a field, or resets a stream instead of
// answering, is reported as a difference, and a sequence the hook does
// not touch is not.
func TestH2DifferentialSeesADifference(t *testing.T) {
	for _, tc := range []struct {
		name     string
		wrapB    func(http.Handler) http.Handler
		ops      []h2op
		mentions []string // in the reported difference; nil: no difference
	}{
		{"a dropped field", dropETag("/hit/small"), []h2op{get(pEtagless, vGet), get(pSmall, vGet)}, []string{"stream 3", `etag: \"v1\"`}},
		{"a dropped field, not asked for", dropETag("/hit/small"), []h2op{get(pEtagless, vGet), get(pLarge, vGet)}, nil},
		{"a reset instead of an answer", abortOn("/nostore"), []h2op{get(pSmall, vGet), get(pNoStore, vGet)}, []string{"stream 3", "RST_STREAM INTERNAL_ERROR"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newDiffPair(t, pairOptions{frontA: edge.FrontNetHTTP, frontB: edge.FrontNetHTTP, wrapB: tc.wrapB})
			a, b, err := p.run(tc.ops, sequenceBudget)
			if err != nil {
				t.Fatal(err)
			}
			d, _ := diffOutcomes("A", "B (hooked)", tc.ops, a, b)
			if tc.mentions == nil {
				if d != "" {
					t.Fatalf("a difference where the hook changes nothing:\n%s", d)
				}
				return
			}
			if d == "" {
				t.Fatalf("no difference reported for:\n%s", opsString(tc.ops))
			}
			for _, m := range tc.mentions {
				if !strings.Contains(d, m) {
					t.Errorf("the difference does not mention %q:\n%s", m, d)
				}
			}
			t.Logf("reported as:\n%s", d)
		})
	}
}
