// Package cassandra opens gocql sessions with the settings every service
// shares: token-aware routing, LOCAL_QUORUM by default, bounded timeouts and
// retries, and a keyspace that must already exist (the migration runner
// creates it).
package cassandra

import (
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

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
	cc.RetryPolicy = &gocql.ExponentialBackoffRetryPolicy{NumRetries: 3, Min: 50 * time.Millisecond, Max: time.Second}
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

// Connect opens a session on the configured keyspace.
func Connect(c *Config) (*gocql.Session, error) {
	s, err := c.ClusterConfig(c.Keyspace).CreateSession()
	if err != nil {
		return nil, fmt.Errorf("connect to cassandra at %s (keyspace %s): %w", c.Hosts, c.Keyspace, err)
	}
	return s, nil
}

// Ping runs a trivial query; it backs readiness checks.
func Ping(s *gocql.Session) error {
	var v string
	if err := s.Query("SELECT release_version FROM system.local").Scan(&v); err != nil {
		return fmt.Errorf("query cassandra: %w", err)
	}
	return nil
}
