// Package mail delivers config-svc's e-mail (password reset, e-mail
// verification, invitation and address claim links): plain text messages
// with RFC 5322 headers, sent by SMTP (net/smtp) or written into a pickup
// directory as .eml files, which the local stack and
// development use and which many MTAs (and a mail catcher) pick up. A
// Queue sends them in the background, retrying temporary failures.
package mail

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// Message is a plain-text e-mail to one recipient.
type Message struct {
	From    *mail.Address // the sender, -mail-from
	To      string        // the recipient's address
	Subject string
	Body    string // plain text, lines separated by \n
}

// Sender delivers a message. A Sender's error says whether a retry may
// succeed (Temporary).
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// ParseFrom parses the sender's address ("Acme Analytics <no-reply@acme.example>"
// or a bare address), as -mail-from is given.
func ParseFrom(s string) (*mail.Address, error) {
	a, err := mail.ParseAddress(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not an e-mail address such as 'Acme Analytics <no-reply@acme.example>': %w", s, err)
	}
	return a, nil
}

// Bytes returns the message in RFC 5322 form with CRLF line endings:
// From, To, Subject, Date (now), Message-ID (random, at the sender's
// domain), MIME-Version and Content-Type text/plain; charset=utf-8. The
// body is sent as 7bit when it is ASCII in short lines (so that a pickup
// file reads as it was written), else quoted-printable.
func (m Message) Bytes(now time.Time) ([]byte, error) {
	if m.From == nil {
		return nil, errors.New("message has no sender")
	}
	to, err := recipient(m.To)
	if err != nil {
		return nil, err
	}
	if strings.ContainsAny(m.Subject, "\r\n") {
		return nil, errors.New("subject holds a line break")
	}
	id, err := messageID(m.From.Address)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	header := func(name, value string) { b.WriteString(name + ": " + value + "\r\n") }
	header("From", m.From.String())
	header("To", to.String())
	header("Subject", mime.QEncoding.Encode("utf-8", m.Subject))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", id)
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	body := strings.ReplaceAll(strings.ReplaceAll(m.Body, "\r\n", "\n"), "\n", "\r\n")
	if sevenBit(body) {
		header("Content-Transfer-Encoding", "7bit")
		b.WriteString("\r\n" + body)
		return b.Bytes(), nil
	}
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(body)); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// recipient parses a bare address. A local part that is no dot-atom
// (user.@, a..b@: sign-up takes them, and mail servers do quoted) is read
// as a quoted string, which To then quotes; a quoted string holds no line
// break.
func recipient(s string) (*mail.Address, error) {
	a, err := mail.ParseAddress(s)
	if local, domain, ok := strings.Cut(s, "@"); err != nil && ok && !strings.ContainsAny(local, `"\`) {
		a, err = mail.ParseAddress(`"` + local + `"@` + domain)
	}
	if err != nil || a.Address != s {
		return nil, fmt.Errorf("recipient %q is not a bare e-mail address", s)
	}
	return a, nil
}

// sevenBit reports whether body (CRLF lines) can be sent as it is: ASCII
// without NUL or bare CR, each line within RFC 5322's 998 octets.
func sevenBit(body string) bool {
	if !utf8.ValidString(body) {
		return false
	}
	for line := range strings.SplitSeq(body, "\r\n") {
		if len(line) > 998 {
			return false
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; c == 0 || c == '\r' || c >= 0x80 {
				return false
			}
		}
	}
	return true
}

// messageID returns a new Message-ID at the domain of the sender's
// address.
func messageID(from string) (string, error) {
	var r [16]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", fmt.Errorf("message id: %w", err)
	}
	domain := from[strings.LastIndexByte(from, '@')+1:]
	return "<" + hex.EncodeToString(r[:]) + "@" + domain + ">", nil
}
