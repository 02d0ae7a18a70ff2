package listen

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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/meridiancdn/meridian/edge"
)

// Server puts one http.Handler on an edge's listeners: plain HTTP/1.1,
// HTTPS with HTTP/2, and HTTP/3 over QUIC on the HTTPS port number (UDP),
// advertised with Alt-Svc. All three hand requests to the same handler;
// with server.front "fast" and an *edge.Handler, the plain listener's
// plain hits are answered by the fast front (see the package doc).
//
// Against hostile clients it caps the open connections, in all and per
// client address (server.max_connections, server.max_connections_per_ip,
// counted at accept on every listener), refuses HTTP/1.1 requests whose
// framing is ambiguous (both Content-Length and Transfer-Encoding: 400,
// and the connection closed), and closes HTTP/2 and HTTP/3 connections
// whose client cancels most of its requests before an answer (rapid
// reset).
type Server struct {
	cfg     edge.Config
	opt     Options
	handler http.Handler
	log     *slog.Logger
	reg     prometheus.Registerer // nil: the metrics are not registered
	m       *connMetrics
	lim     *connLimiter

	plain  *http.Server // with Front "fast": the net/http server behind it
	fast   *fastFront   // nil unless Front is "fast"
	secure *http.Server
	lean   *leanH2 // nil unless Front is "fast": the HTTPS listener's HTTP/2
	h3     *http3.Server

	plainLn  net.Listener
	secureLn net.Listener
	udp      net.PacketConn
	quicTr   *quic.Transport
	quicLn   *quic.EarlyListener

	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// Options are what a Server is made with besides its config and handler.
// The zero value works.
type Options struct {
	// Logger receives the listeners' event logs. Nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the connection metrics
	// (meridian_edge_connections, ..._rejected_total,
	// ..._abusive_connections_closed_total, ..._ambiguous_framing_total)
	// from Start until Shutdown. Nil means they are kept but not
	// registered anywhere.
	Registerer prometheus.Registerer
	// GetCertificate, chooses the certificate of
	// every handshake of the HTTPS and HTTP/3 listeners (edge/certs
	// does, by SNI); tls.cert_file is then not loaded here. Nil: the
	// one certificate of tls.cert_file and tls.key_file.
	GetCertificate func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	// NextProtos are ALPN protocols the HTTPS listener offers after h2
	// and http/1.1 (acme-tls/1 for ACME's tls-alpn-01 challenge).
	NextProtos []string
	// WrapPlain, wraps the plain listener's
	// handler (ACME's http-01 challenge is answered there). The fast
	// front still answers fresh hits itself.
	WrapPlain func(http.Handler) http.Handler
}

// NewServer prepares a Server for cfg's listeners (listen, tls, server);
// Start binds and serves.
func NewServer(cfg edge.Config, handler http.Handler, opt Options) *Server {
	log := opt.Logger
	if log == nil {
		log = slog.Default()
	}
	m := newConnMetrics()
	cfg = cfg.WithDefaults()
	return &Server{cfg: cfg, handler: handler, log: log, opt: opt, reg: opt.Registerer, m: m, lim: newConnLimiter(cfg.Server, m)}
}

// Start binds every configured listener (so a busy port is reported here,
// not later) and serves on them in the background until Shutdown.
func (s *Server) Start() error {
	if s.reg != nil {
		for i, c := range s.m.collectors() {
			if err := s.reg.Register(c); err != nil {
				for _, r := range s.m.collectors()[:i] {
					s.reg.Unregister(r)
				}
				return fmt.Errorf("listeners' metrics: %w", err)
			}
		}
	}
	if err := s.start(); err != nil {
		s.unregister()
		return err
	}
	return nil
}

// unregister takes the connection metrics off the Registerer.
func (s *Server) unregister() {
	if s.reg != nil {
		for _, c := range s.m.collectors() {
			s.reg.Unregister(c)
		}
	}
}

func (s *Server) start() error {
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
	plainHandler := s.handler
	if s.opt.WrapPlain != nil {
		plainHandler = s.opt.WrapPlain(plainHandler)
	}
	s.plain = newHTTP(s.plainGuard(plainHandler))
	s.plain.ConnContext = framerContext
	// Every request reaches plainGuard, OPTIONS * too, so that it
	// counts them as the framer does.
	s.plain.DisableGeneralOptionsHandler = true
	if sc.Front == edge.FrontFast {
		s.fast = newFastFront(sc, s.handler, s.plain, s.lim, s.log)
		if s.fast.h == nil {
			// Hits must not skip what wraps the handler: every request
			// goes through it, and so through net/http. Say so.
			s.log.Warn("server.front fast: the handler is not an *edge.Handler, so the fast front cannot answer hits itself; every request goes through net/http",
				"handler", fmt.Sprintf("%T", s.handler))
		}
		s.fast.hand = newHandoffListener(ln.Addr())
	}

	if t := s.cfg.TLS; t != nil {
		tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.opt.GetCertificate != nil {
			tlsConf.GetCertificate = s.opt.GetCertificate
			tlsConf.NextProtos = append([]string{"h2", "http/1.1"}, s.opt.NextProtos...)
		} else {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				ln.Close()
				return fmt.Errorf("tls: %w", err)
			}
			tlsConf.Certificates = []tls.Certificate{cert}
		}
		if err := s.listenSecure(t, tlsConf); err != nil {
			ln.Close()
			return err
		}
	}

	if s.fast != nil {
		s.serve(func() error { return s.plain.Serve(s.fast.hand) })
		s.serve(func() error { return s.fast.serve(s.plainLn) })
	} else {
		ll := &limitListener{Listener: s.plainLn, l: s.lim, framed: true, maxHead: sc.MaxHeaderBytes, sendTimeout: sc.SendTimeout}
		s.serve(func() error { return s.plain.Serve(ll) })
	}
	if s.secure != nil {
		ll := &limitListener{Listener: s.secureLn, l: s.lim, sendTimeout: s.cfg.Server.SendTimeout}
		s.serve(func() error { return s.secure.ServeTLS(ll, "", "") })
	}
	if s.h3 != nil {
		s.serve(func() error { return s.h3.ServeListener(s.quicLn) })
	}
	return nil
}

// plainGuard is the first handler of the plain listener's net/http
// server (for the fast front: of the requests it lends). It answers 400
// and closes the connection for a request whose framing its reqFramer
// found faulty, and answers OPTIONS * as net/http would.
func (s *Server) plainGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fr, ok := r.Context().Value(framerKey{}).(*reqFramer); ok && fr.faultyNext() {
			s.m.ambiguous.Inc()
			w.Header().Set("Connection", "close")
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "meridian: 400 Bad Request: a request must not carry both Content-Length and Transfer-Encoding, nor Transfer-Encoding in HTTP/1.0 (RFC 9112 §6.1)", http.StatusBadRequest)
			return
		}
		if r.Method == http.MethodOptions && r.RequestURI == "*" {
			w.Header().Set("Content-Length", "0")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// errConnLimit refuses a QUIC connection past the connection caps.
var errConnLimit = errors.New("connection limit reached")

// admitQUIC is the QUIC transport's ConnContext: it counts a new
// connection against the caps until its context ends (the connection
// closed or its handshake failed).
func (s *Server) admitQUIC(ctx context.Context, ci *quic.ClientInfo) (context.Context, error) {
	key, ok := s.lim.admit(ci.RemoteAddr)
	if !ok {
		return ctx, errConnLimit
	}
	context.AfterFunc(ctx, func() { s.lim.release(key) })
	return ctx, nil
}

// abusive counts a connection closed by its connGuard.
func (s *Server) abusive(proto int) {
	if proto < 0 || proto >= len(protocols) {
		proto = 0
	}
	s.m.abusive.WithLabelValues(protocols[proto]).Inc()
}

// listenSecure binds the TLS listener and, unless disabled, a UDP socket on
// the same port number for HTTP/3. With port 0 it retries until both fit.
func (s *Server) listenSecure(t *edge.TLSConfig, tlsConf *tls.Config) error {
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
	guarded := guardResets(s.handler, s.cfg.Server.SendTimeout)
	handler := guarded
	altSvc := "" // the HTTP/3 advertised to "auto" sites; "" without HTTP/3
	if s.udp != nil {
		port := s.udp.LocalAddr().(*net.UDPAddr).Port
		quicConf := &quic.Config{
			MaxIdleTimeout:     s.cfg.Server.IdleTimeout,
			MaxIncomingStreams: 1000,
		}
		h3TLS := http3.ConfigureTLSConfig(tlsConf.Clone())
		// A transport of our own, for its hooks: connections are
		// counted against the caps as they arrive, and an address that
		// holds half its share proves it is no spoofed one (Retry)
		// before it gets more.
		tr := &quic.Transport{Conn: s.udp, ConnContext: s.admitQUIC, VerifySourceAddress: s.lim.crowded}
		ln, err := tr.ListenEarly(h3TLS, quicConf)
		if err != nil {
			tr.Close()
			s.udp.Close()
			s.secureLn.Close()
			return fmt.Errorf("tls.listen (http/3): %w", err)
		}
		s.quicTr, s.quicLn = tr, ln
		s.h3 = &http3.Server{
			Handler:        guarded,
			TLSConfig:      h3TLS,
			MaxHeaderBytes: s.cfg.Server.MaxHeaderBytes,
			IdleTimeout:    s.cfg.Server.IdleTimeout,
			Port:           port,
			QUICConfig:     quicConf,
			Logger:         s.log,
			ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
				g := &connGuard{close: func(proto int) {
					s.abusive(proto)
					c.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeExcessiveLoad), "too many cancelled requests")
				}}
				return context.WithValue(ctx, connGuardKey{}, g)
			},
		}
		altSvc = fmt.Sprintf(`h3=":%d"; ma=86400`, port)
		if _, ok := s.handler.(*edge.Handler); !ok {
			// An edge handler sets it per site (sites[].alt_svc), from
			// the connection's context; any other gets it on every
			// answer.
			field := []string{altSvc}
			handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Alt-Svc"] = field
				guarded.ServeHTTP(w, r)
			})
		}
	}
	s.secure = &http.Server{
		Handler:           handler,
		TLSConfig:         tlsConf,
		ReadHeaderTimeout: s.cfg.Server.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.Server.IdleTimeout,
		MaxHeaderBytes:    s.cfg.Server.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			g := &connGuard{close: func(proto int) {
				s.abusive(proto)
				// Under the TLS layer: a close_notify could wait on a
				// client that does not read.
				if tc, ok := c.(*tls.Conn); ok {
					tc.NetConn().Close()
					return
				}
				c.Close()
			}}
			if altSvc != "" {
				ctx = edge.WithAltSvc(ctx, altSvc)
			}
			return context.WithValue(ctx, connGuardKey{}, g)
		},
	}
	var lean *leanH2
	if h, ok := s.handler.(*edge.Handler); ok && s.cfg.Server.Front == edge.FrontFast {
		lean = newLeanH2(h, s.cfg.Server, altSvc, s.log)
		s.lean = lean
	}
	if err := serveHTTP2(s.secure, lean); err != nil {
		s.closeSecure()
		return fmt.Errorf("tls (http/2): %w", err)
	}
	return nil
}

// closeSecure closes what listenSecure bound, when it fails after.
func (s *Server) closeSecure() {
	if s.quicLn != nil {
		s.quicLn.Close()
	}
	if s.quicTr != nil {
		s.quicTr.Close()
	}
	if s.udp != nil {
		s.udp.Close()
	}
	s.secureLn.Close()
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
		if s.lean != nil {
			s.lean.wait() // the GOAWAYs its Shutdown hook sends
		}
		if s.quicLn != nil {
			s.quicLn.Close()
		}
		if s.h3 != nil {
			s.h3.Close()
		}
		if s.quicTr != nil {
			s.quicTr.Close()
		}
		if s.udp != nil {
			s.udp.Close()
		}
		s.wg.Wait()
		s.unregister()
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}
