package cluster

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
)

// InternalHost is the Host of requests that members send each other about
// the cluster itself (such as purges), never about a site.
const InternalHost = "meridian.internal"

// AckHeader names the member that acknowledged an internal request.
const AckHeader = "Meridian-Ack"

// Broadcast sends a signed GET for target (a path and query on
// InternalHost) to every live member but this one and to every peer in
// extra (name → peer endpoint), in parallel, and reports who acknowledged
// it (answered 2xx naming itself in AckHeader) and who did not, each
// sorted. The request is signed like a peer fill, so only members holding
// the secret can send one.
func (n *Member) Broadcast(ctx context.Context, target string, extra map[string]string) (acked, failed []string) {
	peers := map[string]string{}
	for name, addr := range extra {
		peers[name] = addr
	}
	if v := n.view.Load(); v != nil {
		for name, addr := range v.addrs {
			peers[name] = addr
		}
	}
	delete(peers, n.cfg.Name)
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for name, addr := range peers {
		wg.Add(1)
		go func(name, addr string) {
			defer wg.Done()
			err := n.send(ctx, name, addr, target)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				n.log.Warn("broadcast not acknowledged", "peer", name, "target", target, "err", err)
				failed = append(failed, name)
				return
			}
			acked = append(acked, name)
		}(name, addr)
	}
	wg.Wait()
	sort.Strings(acked)
	sort.Strings(failed)
	return acked, failed
}

// send delivers one signed internal request and checks the ack.
func (n *Member) send(ctx context.Context, name, addr, target string) error {
	ctx, cancel := context.WithTimeout(ctx, n.cfg.PeerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.scheme+"://"+addr+target, nil)
	if err != nil {
		return err
	}
	req.Host = InternalHost
	n.sig.sign(req.Header, http.MethodGet, InternalHost, req.URL.RequestURI(), n.cfg.Name, hopInternal, name)
	resp, err := n.client.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
	if resp.StatusCode/100 != 2 || resp.Header.Get(AckHeader) != name {
		return fmt.Errorf("status %d, ack %q", resp.StatusCode, resp.Header.Get(AckHeader))
	}
	return nil
}

// SendTo delivers one signed internal request (see Broadcast) to the named
// member: at addr, or at its current peer endpoint when it is a live
// member.
func (n *Member) SendTo(ctx context.Context, name, addr, target string) error {
	if v := n.view.Load(); v != nil && v.addrs[name] != "" {
		addr = v.addrs[name]
	}
	if addr == "" {
		return fmt.Errorf("peer %s: no known address", name)
	}
	return n.send(ctx, name, addr, target)
}
