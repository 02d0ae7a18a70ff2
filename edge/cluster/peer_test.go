package cluster_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meridiancdn/meridian/edge/cluster"
	"github.com/meridiancdn/meridian/edge/limit"
	"github.com/meridiancdn/meridian/edge/node"
	"github.com/meridiancdn/meridian/internal/cdntest"
	"github.com/meridiancdn/meridian/internal/poll"
)

// signAs signs a peer request as the wire format says, independently of
// the package's own signer: HMAC-SHA256 over the context string, method,
// Host, request target, time and name, one per line.
func signAs(req *http.Request, secret, name string, at time.Time) {
	ts := strconv.FormatInt(at.Unix(), 10)
	m := hmac.New(sha256.New, []byte(secret))
	io.WriteString(m, strings.Join([]string{"meridian-peer-v1", req.Method, req.Host, req.URL.RequestURI(), ts, name}, "\n"))
	req.Header.Set(cluster.HeaderPeerName, name)
	req.Header.Set(cluster.HeaderPeerTime, ts)
	req.Header.Set(cluster.HeaderPeerSignature, "v1="+hex.EncodeToString(m.Sum(nil)))
}

func TestPeerEndpointRefusesUnsigned(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{Nodes: 1})
	n := reg.Node(0)
	peer := "http://" + n.Cluster.PeerAddr()
	target := "/peer/a" + cacheable
	now := time.Now()

	cases := []struct {
		name   string
		method string
		prep   func(*http.Request)
		status int
		reason string
	}{
		{"unsigned", "GET", func(*http.Request) {}, 403, "unsigned"},
		{"wrong secret", "GET", func(r *http.Request) { signAs(r, "not-the-region-secret-0000", "edge9", now) }, 403, "bad signature"},
		{"expired", "GET", func(r *http.Request) { signAs(r, cdntest.Secret, "edge9", now.Add(-time.Minute)) }, 403, "clock skew"},
		{"from the future", "GET", func(r *http.Request) { signAs(r, cdntest.Secret, "edge9", now.Add(time.Minute)) }, 403, "clock skew"},
		{"tampered path", "GET", func(r *http.Request) {
			signAs(r, cdntest.Secret, "edge9", now)
			r.URL.Path = "/peer/b"
		}, 403, "bad signature"},
		{"tampered query", "GET", func(r *http.Request) {
			signAs(r, cdntest.Secret, "edge9", now)
			r.URL.RawQuery = "cc=max-age%3D601"
		}, 403, "bad signature"},
		{"tampered host", "GET", func(r *http.Request) {
			signAs(r, cdntest.Secret, "edge9", now)
			r.Host = "other.test"
		}, 403, "bad signature"},
		{"tampered name", "GET", func(r *http.Request) {
			signAs(r, cdntest.Secret, "edge9", now)
			r.Header.Set(cluster.HeaderPeerName, "edge8")
		}, 403, "bad signature"},
		{"signature twice", "GET", func(r *http.Request) {
			signAs(r, cdntest.Secret, "edge9", now)
			r.Header.Add(cluster.HeaderPeerSignature, r.Header.Get(cluster.HeaderPeerSignature))
		}, 403, "malformed"},
		{"garbage signature", "GET", func(r *http.Request) {
			signAs(r, cdntest.Secret, "edge9", now)
			r.Header.Set(cluster.HeaderPeerSignature, "v1=zz")
		}, 403, "malformed"},
		{"signed PUT", "PUT", func(r *http.Request) { signAs(r, cdntest.Secret, "edge9", now) }, 405, "GET and HEAD only"},
		{"signed POST", "POST", func(r *http.Request) { signAs(r, cdntest.Secret, "edge9", now) }, 405, "GET and HEAD only"},
		{"signed PURGE", "PURGE", func(r *http.Request) { signAs(r, cdntest.Secret, "edge9", now) }, 405, "GET and HEAD only"},
		{"signed GET with a body", "GET", func(r *http.Request) {
			r.Body = io.NopCloser(strings.NewReader("x"))
			r.ContentLength = 1
			signAs(r, cdntest.Secret, "edge9", now)
		}, 400, "body"},
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			entries, _, _ := n.Edge.StoreStats()
			prior := o.Requests()
			req, err := http.NewRequest(tc.method, peer+target, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = cdntest.SiteHost
			tc.prep(req)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status || !strings.Contains(string(body), tc.reason) {
				t.Errorf("status %d %q, want %d mentioning %q", resp.StatusCode, body, tc.status, tc.reason)
			}
			if resp.Header.Get("Cache-Status") != "" {
				t.Errorf("refused request reached the edge: Cache-Status %q", resp.Header.Get("Cache-Status"))
			}
			if got, _, _ := n.Edge.StoreStats(); got != entries {
				t.Errorf("store went from %d to %d entries", entries, got)
			}
			if got := o.Requests(); got != prior {
				t.Errorf("origin count went from %d to %d", prior, got)
			}
		})
	}

	// A well-signed GET is served by the edge, which fills from the origin.
	req, _ := http.NewRequest("GET", peer+target, nil)
	req.Host = cdntest.SiteHost
	signAs(req, cdntest.Secret, "edge9", time.Now())
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Cache-Status"), n.Name+";") {
		t.Fatalf("signed GET: status %d, Cache-Status %q", resp.StatusCode, resp.Header.Get("Cache-Status"))
	}
	if got := o.RequestsFor(target); got != 1 {
		t.Errorf("origin saw the signed GET's key %d times, want 1", got)
	}
	for _, h := range []string{cluster.HeaderPeerName, cluster.HeaderPeerSignature} {
		if v := resp.Header.Get(h); v != "" {
			t.Errorf("response carries %s: %q", h, v)
		}
	}
}

func TestConcurrentColdKeyReachesOriginOnce(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{})
	attempt(t, func(t *testing.T, try int) string {
		reg.WaitConverged(cdntest.ConvergeTimeout)
		watch := reg.WatchRings()
		target := fmt.Sprintf("/cold/%d%s&delay=300ms", try, cacheable)
		coldAtEveryEdge(t, reg, target)
		if hist := watch(); !cdntest.Unchanged(hist) {
			return fmt.Sprintf("ring sizes %v", hist)
		}
		if got := o.RequestsFor(target); got != 1 {
			t.Errorf("origin saw the cold key %d times, want once for the region", got)
		}
		return ""
	})
}

// coldAtEveryEdge requests target at every edge at once, four times each,
// and checks every answer.
func coldAtEveryEdge(t *testing.T, reg *cdntest.Region, target string) {
	// The origin takes a while to answer (delay=), so every request
	// arrives while the owner's fill is still running.
	const perNode = 4
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, perNode*len(reg.Live()))
	for _, i := range reg.Live() {
		for range perNode {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				resp, body, err := reg.Get(i, target)
				switch {
				case err != nil:
					errs <- err
				case resp.StatusCode != 200 || len(body) != 1024:
					errs <- &statusError{resp.StatusCode, len(body)}
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

type statusError struct{ status, size int }

func (e *statusError) Error() string {
	return "status " + strconv.Itoa(e.status) + ", body " + strconv.Itoa(e.size) + " bytes"
}

// The peer gate refuses fills past its cap with the member's own answer, so
// that the asker does not suspect a busy member and fill from upstream.
func TestPeerGateRefusesAsTheMember(t *testing.T) {
	o := cdntest.StartOrigin(t)
	reg := cdntest.StartRegion(t, o, cdntest.RegionOptions{Nodes: 1, Config: func(_ int, c *node.Config) {
		c.Cluster.PeerLimits = limit.GateConfig{MaxConcurrent: 1, MaxQueue: -1}
	}})
	n := reg.Node(0)
	peer := "http://" + n.Cluster.PeerAddr()
	get := func(target string) *http.Response {
		req, _ := http.NewRequest("GET", peer+target, nil)
		req.Host = cdntest.SiteHost
		signAs(req, cdntest.Secret, "edge9", time.Now())
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	slow := make(chan *http.Response, 1)
	go func() { slow <- get("/gate/slow?delay=1s&" + strings.TrimPrefix(cacheable, "?")) }()
	poll.Until(t, 5*time.Second, "the slow fill to hold the gate", func() bool { return n.Cluster.PeerGate().Stats().InFlight == 1 })
	resp := get("/gate/other" + cacheable)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" ||
		!strings.HasPrefix(resp.Header.Get("Cache-Status"), n.Name+";") {
		t.Fatalf("past the cap: %d, Retry-After %q, Cache-Status %q", resp.StatusCode, resp.Header.Get("Retry-After"), resp.Header.Get("Cache-Status"))
	}
	r := <-slow
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("the admitted fill: %d", r.StatusCode)
	}
}
