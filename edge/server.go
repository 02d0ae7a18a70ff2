package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Server puts one http.Handler on an edge's listeners: plain HTTP/1.1,
// HTTPS with HTTP/2, and HTTP/3 over QUIC on the HTTPS port number (UDP),
// advertised with Alt-Svc. All three hand requests to the same handler.
type Server struct {
	cfg     Config
	handler http.Handler
	log     *slog.Logger

	plain  *http.Server // with Front "fast": the net/http server behind it
	fast   *fastFront   // nil unless Front is "fast"
	secure *http.Server
	h3     *http3.Server

	plainLn  net.Listener
	secureLn net.Listener
	udp      net.PacketConn

	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// NewServer prepares a Server; Start binds and serves.
func NewServer(cfg Config, handler http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{cfg: cfg.WithDefaults(), handler: handler, log: log}
}

// Start binds every configured listener (so a busy port is reported here,
// not later) and serves on them in the background until Shutdown.
func (s *Server) Start() error {
	sc := s.cfg.Server
	newHTTP := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: sc.ReadHeaderTimeout,
			IdleTimeout:       sc.IdleTimeout,
			MaxHeaderBytes:    sc.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	s.plainLn = ln
	s.plain = newHTTP(s.handler)
	if sc.Front == FrontFast {
		s.fast = newFastFront(sc, s.handler, s.plain, s.log)
		s.fast.hand = newHandoffListener(ln.Addr())
	}

	if t := s.cfg.TLS; t != nil {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			ln.Close()
			return fmt.Errorf("tls: %w", err)
		}
		if err := s.listenSecure(t, cert); err != nil {
			ln.Close()
			return err
		}
	}

	if s.fast != nil {
		s.serve(func() error { return s.plain.Serve(s.fast.hand) })
		s.serve(func() error { return s.fast.serve(s.plainLn) })
	} else {
		s.serve(func() error { return s.plain.Serve(s.plainLn) })
	}
	if s.secure != nil {
		s.serve(func() error { return s.secure.ServeTLS(s.secureLn, "", "") })
	}
	if s.h3 != nil {
		s.serve(func() error { return s.h3.Serve(s.udp) })
	}
	return nil
}

// listenSecure binds the TLS listener and, unless disabled, a UDP socket on
// the same port number for HTTP/3. With port 0 it retries until both fit.
func (s *Server) listenSecure(t *TLSConfig, cert tls.Certificate) error {
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	for try := 0; ; try++ {
		ln, err := net.Listen("tcp", t.Listen)
		if err != nil {
			return fmt.Errorf("tls.listen: %w", err)
		}
		if t.DisableHTTP3 {
			s.secureLn = ln
			break
		}
		port := ln.Addr().(*net.TCPAddr).Port
		host, _, _ := net.SplitHostPort(t.Listen)
		udp, err := net.ListenPacket("udp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			ln.Close()
			if _, p, _ := net.SplitHostPort(t.Listen); p == "0" && try < 10 {
				continue
			}
			return fmt.Errorf("tls.listen (udp for http/3): %w", err)
		}
		s.secureLn, s.udp = ln, udp
		break
	}
	handler := s.handler
	if s.udp != nil {
		port := s.udp.LocalAddr().(*net.UDPAddr).Port
		s.h3 = &http3.Server{
			Handler:        s.handler,
			TLSConfig:      http3.ConfigureTLSConfig(tlsConf.Clone()),
			MaxHeaderBytes: s.cfg.Server.MaxHeaderBytes,
			IdleTimeout:    s.cfg.Server.IdleTimeout,
			Port:           port,
			QUICConfig: &quic.Config{
				MaxIdleTimeout:     s.cfg.Server.IdleTimeout,
				MaxIncomingStreams: 1000,
			},
			Logger: s.log,
		}
		altSvc := fmt.Sprintf(`h3=":%d"; ma=86400`, port)
		handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Alt-Svc"] = []string{altSvc}
			s.handler.ServeHTTP(w, r)
		})
	}
	s.secure = &http.Server{
		Handler:           handler,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: s.cfg.Server.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.Server.IdleTimeout,
		MaxHeaderBytes:    s.cfg.Server.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	return nil
}

func (s *Server) serve(fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("listener stopped", "err", err)
		}
	}()
}

// Addr is the plain HTTP/1.1 listener's address.
func (s *Server) Addr() string { return s.plainLn.Addr().String() }

// TLSAddr is the HTTPS listener's address ("" without TLS); HTTP/3 uses the
// same host and port over UDP.
func (s *Server) TLSAddr() string {
	if s.secureLn == nil {
		return ""
	}
	return s.secureLn.Addr().String()
}

// Shutdown stops accepting, lets in-flight requests finish until ctx ends,
// then closes what remains. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		var (
			errs []error
			mu   sync.Mutex
			wg   sync.WaitGroup
		)
		shut := func(fn func(context.Context) error) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		switch {
		case s.fast != nil:
			// The fast front drains first, while net/http behind it still
			// answers the requests it lends; then net/http drains.
			s.plainLn.Close()
			shut(s.fast.shutdown)
		case s.plain != nil:
			shut(s.plain.Shutdown)
		}
		if s.secure != nil {
			shut(s.secure.Shutdown)
		}
		if s.h3 != nil {
			shut(s.h3.Shutdown)
		}
		wg.Wait()
		if s.fast != nil {
			s.fast.close()
		} else if s.plain != nil {
			s.plain.Close()
		}
		if s.secure != nil {
			s.secure.Close()
		}
		if s.h3 != nil {
			s.h3.Close()
		}
		if s.udp != nil {
			s.udp.Close()
		}
		s.wg.Wait()
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}
