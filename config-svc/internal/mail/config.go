package mail

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/mail"
	"time"
)

// Config is how mail is delivered: by SMTP (-smtp-addr) or into a pickup
// directory (-mail-dir), or not at all (neither).
type Config struct {
	SMTPAddr        string
	SMTPUsername    string
	SMTPPassword    string
	SMTPStartTLS    bool
	SMTPImplicitTLS bool
	SMTPTimeout     time.Duration
	Dir             string
	From            string
}

// RegisterFlags registers the mail flags on fs.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.SMTPAddr, "smtp-addr", "", "host:port of the SMTP server that sends the product's e-mail, e.g. smtp.example.com:587 (empty: no SMTP; see -mail-dir)")
	fs.StringVar(&c.SMTPUsername, "smtp-username", "", "username for SMTP PLAIN authentication, sent only over TLS or to localhost (empty: none)")
	fs.StringVar(&c.SMTPPassword, "smtp-password", "", "password for SMTP authentication (a secret: give it in the environment)")
	fs.BoolVar(&c.SMTPStartTLS, "smtp-starttls", true, "require STARTTLS of the SMTP server, checking its certificate; a server that does not offer it gets no mail (false: send in the clear, only to a relay on a trusted network)")
	fs.BoolVar(&c.SMTPImplicitTLS, "smtp-implicit-tls", false, "connect to the SMTP server with TLS from the first byte (SMTPS, usually port 465), checking its certificate, instead of STARTTLS (-smtp-starttls does not apply)")
	fs.DurationVar(&c.SMTPTimeout, "smtp-timeout", 5*time.Second, "bound on one whole SMTP send (connect, dialogue, message); a send that times out is retried in the background, backing off")
	fs.StringVar(&c.Dir, "mail-dir", "", "pickup directory: each e-mail is written into it as an .eml file instead of sent by SMTP (development, the local stack, an MTA's pickup directory)")
	fs.StringVar(&c.From, "mail-from", "", "sender of the product's e-mail, e.g. 'Acme Analytics <no-reply@acme.example>' (required with -smtp-addr or -mail-dir)")
}

// Enabled reports whether mail is delivered at all.
func (c *Config) Enabled() bool { return c.SMTPAddr != "" || c.Dir != "" }

// Validate reports the first configuration error.
func (c *Config) Validate() error {
	if c.SMTPAddr != "" && c.Dir != "" {
		return errors.New("-smtp-addr and -mail-dir are both set; mail goes one way: give one")
	}
	if c.SMTPAddr != "" {
		_, port, err := net.SplitHostPort(c.SMTPAddr)
		if err != nil || port == "" {
			return fmt.Errorf("-smtp-addr %q is not host:port (e.g. smtp.example.com:587)", c.SMTPAddr)
		}
		if port == "465" && !c.SMTPImplicitTLS {
			// A client waiting for the greeting of a server waiting for
			// its TLS handshake sends nothing until -smtp-timeout.
			return fmt.Errorf("-smtp-addr %q: port 465 is SMTPS, TLS from the first byte: set -smtp-implicit-tls, or use the server's submission port (587) with STARTTLS", c.SMTPAddr)
		}
		if c.SMTPTimeout < time.Second || c.SMTPTimeout > 5*time.Minute {
			return fmt.Errorf("-smtp-timeout %s is out of range 1s..5m", c.SMTPTimeout)
		}
	}
	if c.SMTPPassword != "" && c.SMTPUsername == "" {
		return errors.New("-smtp-password is set without -smtp-username")
	}
	if !c.Enabled() {
		return nil
	}
	if c.From == "" {
		return errors.New("-mail-from is required to send e-mail, e.g. 'Acme Analytics <no-reply@acme.example>'")
	}
	if _, err := ParseFrom(c.From); err != nil {
		return fmt.Errorf("-mail-from: %w", err)
	}
	return nil
}

// Sender returns the configured sender and the sender's address, or nil
// when mail is not delivered. c must be valid.
func (c *Config) Sender() (Sender, *mail.Address) {
	if !c.Enabled() {
		return nil, nil
	}
	from, _ := ParseFrom(c.From)
	if c.Dir != "" {
		return Dir{Path: c.Dir}, from
	}
	return &SMTP{Addr: c.SMTPAddr, Username: c.SMTPUsername, Password: c.SMTPPassword, NoStartTLS: !c.SMTPStartTLS, ImplicitTLS: c.SMTPImplicitTLS, Timeout: c.SMTPTimeout}, from
}
