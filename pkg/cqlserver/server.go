package cqlserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/message"
)

// Config configures a Server.
type Config struct {
	// Addr is the TCP address to listen on, e.g. "127.0.0.1:9042". Port 0
	// picks a free port; Addr() reports the bound address. Empty means
	// "127.0.0.1:9042".
	Addr string
	// DataDir enables durability: a write-ahead log and snapshots in this
	// directory, replayed by New. Empty keeps everything in memory only.
	DataDir string
	// SyncInterval is the group-commit (fsync) interval of the write-ahead
	// log (default 100ms): a crash of the machine loses at most the writes
	// acknowledged in the last interval; a crash of the process loses
	// nothing acknowledged (each change is written to the log file before
	// it is answered). Close always syncs.
	SyncInterval time.Duration
	// Logger receives connection and durability events; nil discards them.
	Logger *slog.Logger
	// Credentials, when not empty, turns on password authentication as
	// Cassandra's PasswordAuthenticator does it: a client must log in with
	// one of these usernames and its password (username → password)
	// before any other request. Empty: no authentication.
	Credentials map[string]string
	// Listen, when set, is called in place of net.Listen by Start and
	// Restart: a test hands in a listener on a port it held beforehand,
	// so that no other listener can take the port between the moment a
	// client is given the address and the one the server listens on.
	Listen func(network, address string) (net.Listener, error)
}

// ErrClosed is returned by operations on a closed server.
var ErrClosed = errors.New("cqlserver: server closed")

// Server is an in-memory CQL server speaking native protocol v4. It is safe
// for concurrent use. The zero value is not usable; create one with New.
//
// Lifecycle: New → Start (or Run) → optionally Stop/Restart any number of
// times → Close. Data and prepared statements survive Stop/Restart, which
// simulate an outage of the store on the same address.
type Server struct {
	cfg Config
	log *slog.Logger
	db  *db

	mu       sync.Mutex
	ln       net.Listener
	addr     string // bound address, kept across Stop/Restart
	conns    map[*conn]struct{}
	serving  sync.WaitGroup // accept loop and connections
	started  bool
	closed   bool
	acceptWG sync.WaitGroup

	unavailable atomic.Bool
	latency     atomic.Int64                       // time.Duration added to every statement
	fault       atomic.Pointer[func(string) Fault] // SetFault's hook; nil: none

	stopJanitor chan struct{}
	janitorDone chan struct{}
}

// New creates a server. With a DataDir it recovers the state kept there
// (and fails if the directory is unusable or locked by another server); it
// does not listen yet.
func New(cfg Config) (*Server, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:9042"
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = defaultSyncInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, log: log, conns: map[*conn]struct{}{}, stopJanitor: make(chan struct{}), janitorDone: make(chan struct{})}
	s.db = newDB(log)
	s.db.onSchemaChange = s.broadcastSchemaChange
	if cfg.DataDir != "" {
		w, err := openWAL(cfg.DataDir, s.db, log, cfg.SyncInterval)
		if err != nil {
			return nil, err
		}
		s.db.wal = w
	}
	go s.janitor()
	return s, nil
}

// Start listens on the configured address and serves connections in the
// background; it returns once the server accepts connections.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.started {
		return errors.New("cqlserver: already started")
	}
	addr := s.cfg.Addr
	if s.addr != "" {
		addr = s.addr
	}
	listen := net.Listen
	if s.cfg.Listen != nil {
		listen = s.cfg.Listen
	}
	ln, err := listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	s.ln, s.addr, s.started = ln, ln.Addr().String(), true
	s.acceptWG.Add(1)
	go s.acceptLoop(ln)
	s.log.Info("cql server listening", slog.String("addr", s.addr), slog.String("data_dir", s.cfg.DataDir))
	return nil
}

// janitor purges expired data periodically until Close.
func (s *Server) janitor() {
	defer close(s.janitorDone)
	t := time.NewTicker(janitorInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopJanitor:
			return
		case now := <-t.C:
			s.db.purgeExpired(now)
		}
	}
}

// Addr returns the bound address ("host:port") once started, else the
// configured one.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.addr != "" {
		return s.addr
	}
	return s.cfg.Addr
}

// Run starts the server if needed, serves until ctx is done and then
// closes it, returning Close's error.
func (s *Server) Run(ctx context.Context) error {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if !started {
		if err := s.Start(); err != nil {
			return err
		}
	}
	<-ctx.Done()
	return s.Close()
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.acceptWG.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("accept failed", slog.Any("err", err))
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if tc, ok := nc.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
		}
		c := newConn(s, nc)
		s.mu.Lock()
		if !s.started {
			s.mu.Unlock()
			nc.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.serving.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.serving.Done()
			c.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// Stop simulates an outage: it stops listening and closes every client
// connection, keeping data, schema and prepared statements. Restart serves
// again on the same address. Drivers see connection errors meanwhile; a
// gocql session with default settings is usable again within about a
// second of Restart (its control connection reconnects and refills the
// pool).
func (s *Server) Stop() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	if !s.started {
		s.mu.Unlock()
		return nil
	}
	s.started = false
	ln, addr := s.ln, s.addr
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	ln.Close()
	s.acceptWG.Wait()
	for _, c := range conns {
		c.close()
	}
	s.serving.Wait()
	s.log.Info("cql server stopped", slog.String("addr", addr))
	return nil
}

// Restart listens again on the address used before Stop.
func (s *Server) Restart() error { return s.Start() }

// SetUnavailable makes every QUERY, PREPARE, EXECUTE and BATCH fail with an
// Unavailable error (code 0x1000) while on, keeping connections open: a
// softer outage than Stop, which drivers recover from without reconnecting.
func (s *Server) SetUnavailable(on bool) { s.unavailable.Store(on) }

// SetLatency makes every QUERY, PREPARE, EXECUTE and BATCH answer d later
// (0: at once), as a slow or overloaded node does: a fault that no
// timeout of a single request may catch, for tests of what bounds a
// whole computation.
func (s *Server) SetLatency(d time.Duration) { s.latency.Store(int64(d)) }

// Fault is what a hook given to SetFault does to a statement.
type Fault int

// Faults.
const (
	// NoFault runs the statement as usual.
	NoFault Fault = iota
	// FailBefore refuses the statement with an Unavailable error without
	// running it: nothing it would write is written.
	FailBefore
	// TimeoutAfter runs the statement, then answers a write timeout in
	// place of its result, as a coordinator does when the replicas
	// applied a write but answered too late: the client cannot tell that
	// the write was applied. (A lightweight transaction's timeout has
	// write type CAS, a batch's BATCH.)
	TimeoutAfter
)

// SetFault makes every QUERY, EXECUTE and BATCH ask fault what to do with
// it, given its CQL text (a batch's statements one by one: the first that
// is not NoFault decides for the whole batch); nil removes the hook.
// PREPARE is never failed, so a driver's statements are prepared as usual.
// The hook runs on the connection's goroutine, before the statement, and
// may be called concurrently; it is for tests of one step of a multi-step
// change failing, or of a write whose outcome the client cannot know.
func (s *Server) SetFault(fault func(cql string) Fault) {
	if fault == nil {
		s.fault.Store(nil)
		return
	}
	s.fault.Store(&fault)
}

// faultFor asks the hook about the statements of one request.
func (s *Server) faultFor(queries ...string) Fault {
	hook := s.fault.Load()
	if hook == nil {
		return NoFault
	}
	for _, q := range queries {
		if f := (*hook)(q); f != NoFault {
			return f
		}
	}
	return NoFault
}

// Close stops serving, closes client connections and, with a data
// directory, syncs the write-ahead log so that every acknowledged write is
// on disk. It is safe to call more than once.
func (s *Server) Close() error {
	err := s.Stop()
	if errors.Is(err, ErrClosed) {
		return nil
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	close(s.stopJanitor)
	<-s.janitorDone
	if s.db.wal != nil {
		if werr := s.db.wal.closeWAL(); werr != nil {
			return fmt.Errorf("close write-ahead log: %w", werr)
		}
	}
	return err
}

// broadcastSchemaChange pushes a SCHEMA_CHANGE event to the connections
// that registered for it.
func (s *Server) broadcastSchemaChange(ch schemaChange) {
	ev := &message.SchemaChangeEvent{ChangeType: ch.change, Target: ch.target, Keyspace: ch.keyspace, Object: ch.object}
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		if c.wantsSchemaEvents.Load() {
			conns = append(conns, c)
		}
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.sendEvent(ev)
	}
}
