// Package cassandra opens gocql sessions with the settings every service
// shares: token-aware routing, LOCAL_QUORUM by default, bounded timeouts and
// retries, and a keyspace that must already exist (the migration runner
// creates it). Services connect with ConnectRetry, which waits for a
// cluster that is not reachable yet; commands with Connect, which tries
// once.
package cassandra

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/acme/analytics/pkg/retry"
	"github.com/gocql/gocql"
)

// Config is the Cassandra connection configuration of a service.
type Config struct {
	Hosts       string // comma-separated host[:port] list
	Keyspace    string
	Consistency string
	Timeout     time.Duration
	LocalDC     string
	Username    string
	Password    string
	// Replication is the keyspace's replication map as CQL, used when the
	// migration runner creates the keyspace.
	Replication string
	// Migrate makes a service apply pending migrations at start-up (the
	// local stack; production runs the migrate job instead).
	Migrate bool
}

// RegisterFlags registers the Cassandra flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Hosts, "cassandra-hosts", "127.0.0.1:9042", "comma-separated Cassandra contact points (host or host:port)")
	fs.StringVar(&c.Keyspace, "cassandra-keyspace", "analytics", "keyspace holding the product's tables")
	fs.StringVar(&c.Consistency, "cassandra-consistency", "LOCAL_QUORUM", "consistency level of reads and writes")
	fs.DurationVar(&c.Timeout, "cassandra-timeout", 5*time.Second, "per-request timeout")
	fs.StringVar(&c.LocalDC, "cassandra-local-dc", "", "local datacenter for DC-aware routing (empty: any)")
	fs.StringVar(&c.Username, "cassandra-username", "", "username for password authentication (empty: none)")
	fs.StringVar(&c.Password, "cassandra-password", "", "password for password authentication")
	fs.StringVar(&c.Replication, "cassandra-replication", "{'class': 'SimpleStrategy', 'replication_factor': 1}",
		"replication of the keyspace when migrations create it (production: {'class': 'NetworkTopologyStrategy', '<dc>': 3})")
	fs.BoolVar(&c.Migrate, "cassandra-migrate", false, "apply pending schema migrations at start-up")
}

// Validate reports a configuration error an operator can act on.
func (c *Config) Validate() error {
	if len(c.HostList()) == 0 {
		return errors.New("-cassandra-hosts is empty; give at least one contact point")
	}
	if c.Keyspace == "" {
		return errors.New("-cassandra-keyspace is empty")
	}
	if _, err := ParseConsistency(c.Consistency); err != nil {
		return err
	}
	if c.Timeout <= 0 {
		return errors.New("-cassandra-timeout must be positive")
	}
	return nil
}

// HostList returns the contact points as a slice.
func (c *Config) HostList() []string {
	var out []string
	for _, h := range strings.Split(c.Hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			out = append(out, h)
		}
	}
	return out
}

// ParseConsistency parses a consistency level name such as LOCAL_QUORUM.
func ParseConsistency(s string) (gocql.Consistency, error) {
	var cl gocql.Consistency
	if err := cl.UnmarshalText([]byte(strings.ToUpper(s))); err != nil {
		return 0, fmt.Errorf("-cassandra-consistency %q is not a consistency level (e.g. LOCAL_QUORUM, QUORUM, ONE)", s)
	}
	return cl, nil
}

// ClusterConfig returns the gocql cluster configuration for c. Keyspace
// selects the session's keyspace; pass "" for a session without one (the
// migration runner's).
func (c *Config) ClusterConfig(keyspace string) *gocql.ClusterConfig {
	cc := gocql.NewCluster(c.HostList()...)
	cc.Keyspace = keyspace
	cc.Consistency, _ = ParseConsistency(c.Consistency)
	cc.SerialConsistency = gocql.LocalSerial
	cc.Timeout = c.Timeout
	cc.ConnectTimeout = c.Timeout
	cc.ProtoVersion = 4
	// Requests are sent at once rather than held up to 200µs to coalesce
	// with others: reports issue dependent reads and want the latency; the
	// pipeline's writes are batched by partition already.
	cc.WriteCoalesceWaitTime = 0
	// A node marked down is tried again every second (gocql's default is
	// a minute). gocql marks a node down when a fill of its connection
	// pool fails, and otherwise tries it again only when its control
	// connection reconnects: a fill failing after the control connection
	// came back (a node restarting, or one pool connection refused) left
	// every query failing for up to a minute after the outage.
	cc.ReconnectInterval = time.Second
	cc.RetryPolicy = &retryPolicy{gocql.ExponentialBackoffRetryPolicy{NumRetries: 3, Min: 50 * time.Millisecond, Max: time.Second}}
	fallback := gocql.RoundRobinHostPolicy()
	if c.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(c.LocalDC)
	}
	cc.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	if c.Username != "" {
		cc.Authenticator = gocql.PasswordAuthenticator{Username: c.Username, Password: c.Password}
	}
	return cc
}

// Connect opens a session on the configured keyspace, trying once: for
// commands (migrate, reprocess) and tests, whose callers decide whether to
// try again.
func Connect(c *Config) (*gocql.Session, error) {
	s, err := c.ClusterConfig(c.Keyspace).CreateSession()
	if err != nil {
		return nil, fmt.Errorf("connect to cassandra at %s (keyspace %s): %w", c.Hosts, c.Keyspace, err)
	}
	return s, nil
}

// ConnectRetry opens a session on the configured keyspace (none when
// c.Keyspace is empty) as a long-running service does at start: while the
// cluster cannot be reached (refused, unresolvable, timing out,
// unavailable) or the keyspace does not exist yet (the migrate job creates
// it), it tries again with retry.Default's backoff (500 ms doubling to
// 15 s), logging each failed attempt at warn and, once connected, how long
// it waited at info. It returns when connected; at once, without waiting,
// when the cluster refuses the credentials (see permanent); and promptly
// with an error wrapping ctx.Err() when ctx ends first, even in the middle
// of an attempt.
//
// The driver's own messages go to log: at debug while connecting (each
// failed attempt's are in its warning already), at warn once connected.
func ConnectRetry(ctx context.Context, c *Config, log *slog.Logger) (*gocql.Session, error) {
	log = log.With(slog.String("cassandra_hosts", c.Hosts), slog.String("keyspace", c.Keyspace))
	driver := &driverLog{log: log.With(slog.String("component", "gocql"))}
	var s *gocql.Session
	err := retry.Until(ctx, retry.Default, log, "connect to cassandra", func(ctx context.Context) (err error) {
		s, err = c.connectOnce(ctx, driver)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connect to cassandra at %s (keyspace %s): %w", c.Hosts, c.Keyspace, err)
	}
	driver.connected.Store(true)
	return s, nil
}

// connectOnce makes one attempt at a session, giving up on it when ctx
// ends (gocql's CreateSession takes no context: an abandoned attempt's
// session is closed when it arrives).
func (c *Config) connectOnce(ctx context.Context, driver gocql.StdLogger) (*gocql.Session, error) {
	s, err := retry.Abandonable(ctx, func() (*gocql.Session, error) {
		cc := c.ClusterConfig(c.Keyspace)
		cc.Logger = driver
		s, err := cc.CreateSession()
		if errors.Is(err, gocql.ErrNoConnectionsStarted) && c.Keyspace != "" && c.keyspaceMissing(driver) {
			err = fmt.Errorf("keyspace %s does not exist yet (the migrate job creates it): %w", c.Keyspace, err)
		}
		return s, err
	}, (*gocql.Session).Close)
	if err != nil && refusedCredentials(err) {
		return nil, retry.Permanent(err)
	}
	return s, err
}

// keyspaceMissing reports whether the cluster answers without the
// keyspace: gocql reports a USE of a missing keyspace only as "no
// connections were made", which would hide the one cause of that which
// waiting for the migrate job heals. False when it cannot tell.
func (c *Config) keyspaceMissing(driver gocql.StdLogger) bool {
	cc := c.ClusterConfig("")
	cc.Logger = driver
	s, err := cc.CreateSession()
	if err != nil {
		return false
	}
	defer s.Close()
	var name string
	err = s.Query("SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name = ?", c.Keyspace).Scan(&name)
	return errors.Is(err, gocql.ErrNotFound)
}

// credentialRefusals are what gocql and Cassandra say when the cluster
// refuses the credentials. Waiting cannot heal these: the process reads
// its credentials once, at start, so what heals them is a restart with
// the Secret (or the role) fixed, and exiting makes the pod's
// CrashLoopBackOff say so where waiting would hide it. Everything else,
// including Cassandra's "Unable to perform authentication" (system_auth
// unavailable: an outage), is retried. gocql flattens these errors into
// text, so the text is what can be matched.
var credentialRefusals = []string{
	"and/or password are incorrect", // Cassandra's PasswordAuthenticator: wrong password, or no such role
	"authentication required",       // gocql: the cluster wants credentials and -cassandra-username is empty
	"unexpected authenticator",      // gocql: the cluster's authenticator is not one PasswordAuthenticator speaks to
}

func refusedCredentials(err error) bool {
	msg := err.Error()
	for _, r := range credentialRefusals {
		if strings.Contains(msg, r) {
			return true
		}
	}
	return false
}

// driverLog passes gocql's messages to a slog logger: at debug while the
// session is being made, at warn after.
type driverLog struct {
	log       *slog.Logger
	connected atomic.Bool
}

func (d *driverLog) Print(v ...any)                 { d.out(fmt.Sprint(v...)) }
func (d *driverLog) Printf(format string, v ...any) { d.out(fmt.Sprintf(format, v...)) }
func (d *driverLog) Println(v ...any)               { d.out(fmt.Sprintln(v...)) }

func (d *driverLog) out(msg string) {
	level := slog.LevelDebug
	if d.connected.Load() {
		level = slog.LevelWarn
	}
	d.log.Log(context.Background(), level, strings.TrimSpace(msg))
}

// Ping runs a trivial query; it backs readiness checks.
func Ping(s *gocql.Session) error {
	var v string
	if err := s.Query("SELECT release_version FROM system.local").Scan(&v); err != nil {
		return fmt.Errorf("query cassandra: %w", err)
	}
	return nil
}

// retryPolicy is gocql's exponential back-off on the next host, except for
// conditional statements (lightweight transactions), which it never tries
// again. gocql retries a write that timed out whatever it is; an upsert
// written twice is the same row, but a condition checked again on another
// replica sees the first attempt's write, which Paxos completes first, and
// answers not applied for the request's own write (a secret revoked read as
// already revoked, a reset link as already used). The error reaches the
// caller instead, whose write's outcome is then unknown, as it handles.
type retryPolicy struct {
	gocql.ExponentialBackoffRetryPolicy
}

func (p *retryPolicy) Attempt(q gocql.RetryableQuery) bool {
	if stmt, ok := q.(interface{ Statement() string }); ok && Conditional(stmt.Statement()) {
		return false
	}
	return p.ExponentialBackoffRetryPolicy.Attempt(q)
}

var conditional = regexp.MustCompile(`(?i)\sIF\s`)

// Conditional reports whether a CQL statement is a lightweight transaction
// (IF NOT EXISTS, IF EXISTS, IF column = ...).
func Conditional(stmt string) bool { return conditional.MatchString(stmt) }
