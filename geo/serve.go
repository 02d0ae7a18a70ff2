package geo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// servers are the listeners Run binds and serves.
type servers struct {
	log    *slog.Logger
	udp    *dns.Server
	tcp    *dns.Server
	http   *http.Server
	httpLn net.Listener
}

// listen binds the configured listeners. DNS gets UDP and TCP on the same
// port: with port 0 the TCP port is taken from the UDP one.
func (sv *servers) listen(s *Service) error {
	sv.log = s.log
	if addr := s.cfg.DNS.Listen; addr != "" {
		pc, ln, err := listenDNS(addr)
		if err != nil {
			return fmt.Errorf("dns.listen %s: %w", addr, err)
		}
		h := s.DNSHandler()
		sv.udp = &dns.Server{PacketConn: pc, Handler: h, UDPSize: dns.DefaultMsgSize}
		sv.tcp = &dns.Server{Listener: ln, Handler: h, ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	}
	if addr := s.cfg.HTTP.Listen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("http.listen %s: %w", addr, err)
		}
		sv.httpLn = ln
		sv.http = &http.Server{
			Handler:           s.Handler(),
			ReadHeaderTimeout: 5 * time.Second,  // a slow client may not hold a connection
			IdleTimeout:       60 * time.Second, // resolvers and status pages reconnect cheaply
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		}
	}
	return nil
}

// listenDNS binds UDP and TCP on one port, retrying a few times when the
// port is 0 and the UDP port chosen is taken for TCP.
func listenDNS(addr string) (net.PacketConn, net.Listener, error) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, lastErr
}

func (sv *servers) dnsAddr() string {
	if sv.udp == nil {
		return ""
	}
	return sv.udp.PacketConn.LocalAddr().String()
}

func (sv *servers) httpAddr() string {
	if sv.httpLn == nil {
		return ""
	}
	return sv.httpLn.Addr().String()
}

// serve starts every server in wg; a server that stops on its own reports
// to errc. It returns once the DNS servers are accepting, so shutdown
// cannot race their start.
func (sv *servers) serve(wg *sync.WaitGroup, errc chan<- error) {
	for _, d := range []*dns.Server{sv.udp, sv.tcp} {
		if d == nil {
			continue
		}
		started := make(chan struct{})
		d.NotifyStartedFunc = func() { close(started) }
		failed := make(chan struct{})
		wg.Go(func() {
			if err := d.ActivateAndServe(); err != nil {
				errc <- fmt.Errorf("dns: %w", err)
				close(failed)
			}
		})
		select {
		case <-started:
		case <-failed:
		}
	}
	if sv.http != nil {
		wg.Go(func() {
			if err := sv.http.Serve(sv.httpLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("http: %w", err)
			}
		})
	}
}

// shutdown stops the servers, letting requests in flight finish for a
// few seconds.
func (sv *servers) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, d := range []*dns.Server{sv.udp, sv.tcp} {
		if d != nil {
			if err := d.ShutdownContext(ctx); err != nil {
				// It never started, or did not drain in time.
				sv.log.Warn("dns shutdown", "err", err)
				if d.PacketConn != nil {
					d.PacketConn.Close()
				}
				if d.Listener != nil {
					d.Listener.Close()
				}
			}
		}
	}
	if sv.http != nil {
		if err := sv.http.Shutdown(ctx); err != nil {
			sv.http.Close()
		}
	}
}

// close releases listeners that were bound but never served.
func (sv *servers) close() {
	if sv.udp != nil {
		sv.udp.PacketConn.Close()
		sv.tcp.Listener.Close()
	}
	if sv.httpLn != nil {
		sv.httpLn.Close()
	}
}
