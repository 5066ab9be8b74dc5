package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"time"
)

// SMTP sends messages to a mail server (a submission port, 587, or a relay
// on 25): STARTTLS, which the server must offer (unless NoStartTLS), then
// PLAIN authentication when Username is set. With ImplicitTLS the
// connection is TLS from its first byte instead (SMTPS, port 465), and
// STARTTLS does not come into it. A server that does not offer
// STARTTLS fails every send: the messages carry reset links, and a missing
// STARTTLS is also what an attacker on the path who strips it from the
// EHLO reply shows. net/smtp also refuses to send the password over a
// connection that is not encrypted, except to localhost.
type SMTP struct {
	Addr     string // host:port
	Username string // "": no authentication
	Password string
	// NoStartTLS sends in the clear, also to a server that offers
	// STARTTLS (a relay on a trusted network, or one whose certificate
	// cannot be checked).
	NoStartTLS bool
	// ImplicitTLS connects with TLS from the first byte (SMTPS, port 465,
	// the server's certificate checked as for STARTTLS), where the
	// dialogue starts in the clear and turns to TLS with STARTTLS.
	ImplicitTLS bool
	// Timeout bounds a whole send: connecting, the dialogue and the data.
	Timeout time.Duration
	// TLSConfig is used for STARTTLS or ImplicitTLS (nil: the system's
	// roots, checked against the host of Addr).
	TLSConfig *tls.Config
	// Now dates messages (nil: time.Now).
	Now func() time.Time
}

// permanentError is a failure that a retry of the same send cannot mend:
// the configuration (a certificate that does not verify, a password sent
// in the clear) or the message.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Temporary reports whether a Sender's error may go away on a retry: the
// mail server unreachable, slow or closing the connection, a 4xx reply
// (greylisting, a full queue), a pickup directory that could not be
// written. A 5xx reply (a refused recipient, relaying or login) and a
// configuration error are not.
func Temporary(err error) bool {
	var reply *textproto.Error
	if errors.As(err, &reply) {
		return reply.Code >= 400 && reply.Code < 500
	}
	var perm permanentError
	return !errors.As(err, &perm)
}

// Send delivers m within s.Timeout (and ctx).
func (s *SMTP) Send(ctx context.Context, m Message) error {
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	msg, err := m.Bytes(now())
	if err != nil {
		return permanentError{err}
	}
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return permanentError{fmt.Errorf("smtp address %q: %w", s.Addr, err)}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	var conn net.Conn
	if s.ImplicitTLS {
		conn, err = (&tls.Dialer{Config: s.tlsConfig(host)}).DialContext(ctx, "tcp", s.Addr)
		if err != nil {
			// A certificate that does not verify, or a server that does
			// not speak TLS first (a submission port: -smtp-implicit-tls
			// is for SMTPS), fails every retry alike.
			return fmt.Errorf("connect to the mail server with TLS: %w", permanentUnlessExchange(err))
		}
	} else if conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", s.Addr); err != nil {
		return fmt.Errorf("connect to the mail server: %w", err)
	}
	// The deadline bounds each read and write; closing on ctx's end ends a
	// send that ctx gave up on sooner.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	defer context.AfterFunc(ctx, func() { conn.Close() })()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		err = fmt.Errorf("smtp greeting: %w", err)
	} else {
		defer c.Close()
		err = s.dialogue(c, host, m, msg)
	}
	if err != nil && (ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded)) {
		// The deadline, or the AfterFunc's close: say why.
		return fmt.Errorf("%w (gave up after %s)", err, time.Since(start).Round(time.Millisecond))
	}
	return err
}

// dialogue runs the SMTP commands of one message on c.
func (s *SMTP) dialogue(c *smtp.Client, host string, m Message, msg []byte) error {
	name, err := os.Hostname()
	if err != nil || name == "" {
		name = "localhost"
	}
	if err := c.Hello(name); err != nil {
		return fmt.Errorf("smtp EHLO: %w", err)
	}
	if !s.NoStartTLS && !s.ImplicitTLS {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return permanentError{fmt.Errorf("the mail server %s does not offer STARTTLS, and the message is not sent in the clear: "+
				"use its submission port (587) or another server that offers it, or set -smtp-starttls=false for a relay on a trusted network", s.Addr)}
		}
		if err := c.StartTLS(s.tlsConfig(host)); err != nil {
			return fmt.Errorf("smtp STARTTLS: %w", permanentUnlessExchange(err)) // the certificate did not verify
		}
	}
	if s.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, host)); err != nil {
			return fmt.Errorf("smtp AUTH: %w", permanentUnlessExchange(err)) // no TLS, or the server offers no PLAIN
		}
	}
	if err := c.Mail(m.From.Address); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	if err := c.Rcpt(m.To); err != nil {
		return fmt.Errorf("smtp RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp message refused: %w", err)
	}
	// The message is accepted; a failed QUIT changes nothing.
	_ = c.Quit()
	return nil
}

// tlsConfig is the TLS configuration for the server at host.
func (s *SMTP) tlsConfig(host string) *tls.Config {
	if s.TLSConfig != nil {
		return s.TLSConfig.Clone()
	}
	return &tls.Config{ServerName: host}
}

// permanentUnlessExchange marks err permanent unless it is the server's
// reply (Temporary judges its code) or the connection failing: what is
// left is our side refusing (a certificate that does not verify, a
// password it would send in the clear), which a retry repeats.
func permanentUnlessExchange(err error) error {
	var reply *textproto.Error
	var ne net.Error
	if errors.As(err, &reply) || errors.As(err, &ne) || errors.Is(err, net.ErrClosed) {
		return err
	}
	return permanentError{err}
}
