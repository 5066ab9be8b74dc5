// Package mailtest runs a real SMTP server (github.com/emersion/go-smtp) on
// loopback for tests: it offers STARTTLS with a certificate made for the
// test (or, StartImplicitTLS, TLS from the first byte; StartWithoutTLS, no
// TLS at all), takes PLAIN
// authentication after it, keeps what it receives, and can be told to
// refuse messages.
package mailtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Message is one message the server accepted.
type Message struct {
	From string
	To   []string
	Data []byte
	TLS  bool   // sent over TLS (after STARTTLS, or from the first byte)
	User string // who authenticated ("": nobody)
}

// Server is a running SMTP server.
type Server struct {
	Addr string
	// ClientTLS trusts the server's certificate (for mail.SMTP.TLSConfig).
	ClientTLS *tls.Config

	username, password string
	implicit           *tls.Config // TLS from the first byte (StartImplicitTLS)

	mu       sync.Mutex
	messages []Message
	refusal  *smtp.SMTPError
}

// Start starts a server that requires username and password (PLAIN, only
// after STARTTLS), or no authentication when username is "". It stops at
// the end of the test.
func Start(t testing.TB, username, password string) *Server {
	t.Helper()
	cert, pool := certificate(t)
	s := &Server{username: username, password: password, ClientTLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	return s.serve(t, &tls.Config{Certificates: []tls.Certificate{cert}})
}

// StartImplicitTLS starts a server like Start that speaks TLS from the
// first byte (SMTPS, as on port 465) and offers no STARTTLS inside it.
func StartImplicitTLS(t testing.TB, username, password string) *Server {
	t.Helper()
	cert, pool := certificate(t)
	s := &Server{username: username, password: password, ClientTLS: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	s.implicit = &tls.Config{Certificates: []tls.Certificate{cert}}
	return s.serve(t, nil)
}

// StartWithoutTLS starts a server that offers no STARTTLS and takes mail
// without authentication: a relay in the clear, or what a client sees
// when someone on the path strips STARTTLS from the server's EHLO reply.
func StartWithoutTLS(t testing.TB) *Server {
	t.Helper()
	return (&Server{}).serve(t, nil)
}

// serve serves s on a loopback port, with STARTTLS when tlsConfig is set.
func (s *Server) serve(t testing.TB, tlsConfig *tls.Config) *Server {
	t.Helper()
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{s: s, c: c}, nil }))
	srv.Domain = "mailtest.localhost"
	srv.TLSConfig = tlsConfig
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	if s.implicit != nil {
		l = tls.NewListener(l, s.implicit)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
	return s
}

// Refuse makes the server answer every following RCPT TO with code and
// message (nil code 0: accept again).
func (s *Server) Refuse(code int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if code == 0 {
		s.refusal = nil
		return
	}
	s.refusal = &smtp.SMTPError{Code: code, EnhancedCode: smtp.EnhancedCodeNotSet, Message: message}
}

// Messages returns what the server accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

type session struct {
	s    *Server
	c    *smtp.Conn
	user string
	msg  Message
}

func (ss *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, username, password string) error {
		if username != ss.s.username || password != ss.s.password {
			return smtp.ErrAuthFailed
		}
		ss.user = username
		return nil
	}), nil
}

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.username != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	_, tls := ss.c.TLSConnectionState()
	ss.msg = Message{From: from, TLS: tls, User: ss.user}
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	refusal := ss.s.refusal
	ss.s.mu.Unlock()
	if refusal != nil {
		return refusal
	}
	ss.msg.To = append(ss.msg.To, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if len(ss.msg.To) == 0 {
		return errors.New("no recipient")
	}
	ss.msg.Data = b
	ss.s.mu.Lock()
	ss.s.messages = append(ss.s.messages, ss.msg)
	ss.s.mu.Unlock()
	return nil
}

func (ss *session) Reset()        { ss.msg = Message{} }
func (ss *session) Logout() error { return nil }

// certificate makes a self-signed certificate for 127.0.0.1 and a pool
// that trusts it.
func certificate(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "mailtest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
