// Package httpserver runs an HTTP server with a bounded graceful shutdown,
// health endpoints and the middleware every service uses (request ID, access
// log, panic recovery, body size limit, metrics).
package httpserver

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Config holds the listener settings of a service's HTTP server.
type Config struct {
	Addr            string
	ShutdownTimeout time.Duration
	ReadTimeout     time.Duration
	WriteTimeout    time.Duration
	IdleTimeout     time.Duration
}

// RegisterFlags registers the server flags on fs with the given default
// listen address.
func (c *Config) RegisterFlags(fs *flag.FlagSet, defaultAddr string) {
	fs.StringVar(&c.Addr, "http-addr", defaultAddr, "HTTP listen address (host:port; port 0 picks a free port)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "how long to drain in-flight requests on shutdown")
	fs.DurationVar(&c.ReadTimeout, "http-read-timeout", 30*time.Second, "maximum time to read a request")
	fs.DurationVar(&c.WriteTimeout, "http-write-timeout", 60*time.Second, "maximum time to write a response")
	fs.DurationVar(&c.IdleTimeout, "http-idle-timeout", 2*time.Minute, "how long an idle keep-alive connection stays open")
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("-http-addr %q is not host:port: %w", c.Addr, err)
	}
	if c.ShutdownTimeout <= 0 {
		return errors.New("-shutdown-timeout must be positive")
	}
	return nil
}

// Server is an HTTP server bound to its listener at construction, so that
// its address is known (and can be registered) before Run.
type Server struct {
	srv     *http.Server
	ln      net.Listener
	timeout time.Duration
	log     *slog.Logger
}

// Listen binds the address in c and returns a server for h.
func Listen(c Config, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", c.Addr, err)
	}
	return &Server{
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			ReadTimeout:       c.ReadTimeout,
			WriteTimeout:      c.WriteTimeout,
			IdleTimeout:       c.IdleTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		ln:      ln,
		timeout: c.ShutdownTimeout,
		log:     log,
	}, nil
}

// Close releases the listener of a server that is not going to Run.
func (s *Server) Close() error { return s.ln.Close() }

// Addr returns the bound address.
func (s *Server) Addr() *net.TCPAddr { return s.ln.Addr().(*net.TCPAddr) }

// Run serves until ctx is done, then stops accepting and waits at most the
// shutdown timeout for in-flight requests. It returns nil after a clean
// shutdown.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	s.log.Info("http server listening", slog.String("addr", s.ln.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		s.srv.Close()
		return fmt.Errorf("shut down http server: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}
