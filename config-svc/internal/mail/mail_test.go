package mail_test

import (
	"bytes"
	"context"
	"io"
	"mime"
	"net"
	netmail "net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/mail"
	"github.com/acme/analytics/config-svc/internal/mail/mailtest"
	"github.com/acme/analytics/pkg/consultest"
)

func message(t *testing.T) mail.Message {
	t.Helper()
	from, err := mail.ParseFrom("Acme Analytics <no-reply@acme.example>")
	if err != nil {
		t.Fatal(err)
	}
	return mail.Message{
		From:    from,
		To:      "owner@shop.example",
		Subject: "Reset your password",
		Body:    "Open this link:\nhttps://app.example/reset-password?token=pr_abc\n",
	}
}

// parse reads a message as a mail reader would, and checks the headers
// every message must have.
func parse(t *testing.T, raw []byte) (*netmail.Message, string) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("a line ends without CR:\n%s", raw)
	}
	m, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("read message: %v\n%s", err, raw)
	}
	for _, h := range []string{"From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "Content-Type"} {
		if m.Header.Get(h) == "" {
			t.Errorf("no %s header:\n%s", h, raw)
		}
	}
	if got := m.Header.Get("Content-Type"); got != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q", got)
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if id := m.Header.Get("Message-Id"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@acme.example>") {
		t.Errorf("Message-ID %q, want <...@acme.example>", id)
	}
	body, err := io.ReadAll(m.Body)
	if err != nil {
		t.Fatal(err)
	}
	return m, string(body)
}

func TestSMTPSendsWithSTARTTLSAndPlainAuth(t *testing.T) {
	srv := mailtest.Start(t, "mailer", "s3cret-password")
	s := &mail.SMTP{Addr: srv.Addr, Username: "mailer", Password: "s3cret-password", Timeout: 5 * time.Second, TLSConfig: srv.ClientTLS}
	if err := s.Send(context.Background(), message(t)); err != nil {
		t.Fatal(err)
	}
	got := srv.Messages()
	if len(got) != 1 {
		t.Fatalf("the server received %d messages, want 1", len(got))
	}
	m := got[0]
	if !m.TLS || m.User != "mailer" || m.From != "no-reply@acme.example" || strings.Join(m.To, ",") != "owner@shop.example" {
		t.Fatalf("received %+v; want it over TLS, authenticated as mailer, from no-reply@acme.example to owner@shop.example", m)
	}
	h, body := parse(t, m.Data)
	if h.Header.Get("From") != `"Acme Analytics" <no-reply@acme.example>` || h.Header.Get("To") != "<owner@shop.example>" || h.Header.Get("Subject") != "Reset your password" {
		t.Errorf("headers %v", h.Header)
	}
	if want := "Open this link:\r\nhttps://app.example/reset-password?token=pr_abc\r\n"; body != want {
		t.Errorf("body %q, want %q", body, want)
	}
}

func TestSMTPFailures(t *testing.T) {
	srv := mailtest.Start(t, "mailer", "s3cret-password")
	// A server that accepts and never speaks.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	closedAddr := consultest.RefusedAddr(t)
	tests := []struct {
		name      string
		smtp      mail.SMTP
		refuse    int
		temporary bool
		want      string
	}{
		{"temporary refusal", mail.SMTP{Addr: srv.Addr, Username: "mailer", Password: "s3cret-password", TLSConfig: srv.ClientTLS}, 451, true, "451"},
		{"permanent refusal", mail.SMTP{Addr: srv.Addr, Username: "mailer", Password: "s3cret-password", TLSConfig: srv.ClientTLS}, 550, false, "550"},
		{"wrong password", mail.SMTP{Addr: srv.Addr, Username: "mailer", Password: "wrong", TLSConfig: srv.ClientTLS}, 0, false, "535"},
		{"certificate not trusted", mail.SMTP{Addr: srv.Addr, Username: "mailer", Password: "s3cret-password"}, 0, false, "certificate"},
		// Without TLS net/smtp will not send the password to another host;
		// to 127.0.0.1 it would, and the server refuses AUTH before TLS.
		{"STARTTLS forbidden", mail.SMTP{Addr: srv.Addr, Username: "mailer", Password: "s3cret-password", NoStartTLS: true}, 0, false, "AUTH"},
		{"nobody listening", mail.SMTP{Addr: closedAddr}, 0, true, "connect"},
		{"no answer in time", mail.SMTP{Addr: silent.Addr().String(), Timeout: 200 * time.Millisecond}, 0, true, "gave up after"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv.Refuse(tt.refuse, "refused by the test")
			defer srv.Refuse(0, "")
			s := tt.smtp
			if s.Timeout == 0 {
				s.Timeout = 5 * time.Second
			}
			start := time.Now()
			err := s.Send(context.Background(), message(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Send = %v, want an error containing %q", err, tt.want)
			}
			if got := mail.Temporary(err); got != tt.temporary {
				t.Errorf("Temporary(%v) = %v, want %v", err, got, tt.temporary)
			}
			if d := time.Since(start); d > s.Timeout+time.Second {
				t.Errorf("Send took %v, past its timeout %v", d, s.Timeout)
			}
		})
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("the server accepted %d messages", n)
	}
}

// A server that does not offer STARTTLS gets no message (it would carry a
// reset link in the clear, to whoever stripped STARTTLS on the way) unless
// STARTTLS is turned off for a trusted relay.
func TestSMTPRequiresSTARTTLS(t *testing.T) {
	srv := mailtest.StartWithoutTLS(t)
	s := &mail.SMTP{Addr: srv.Addr, Timeout: 5 * time.Second}
	err := s.Send(context.Background(), message(t))
	if err == nil || !strings.Contains(err.Error(), "does not offer STARTTLS") || !strings.Contains(err.Error(), "-smtp-starttls=false") {
		t.Fatalf("Send = %v, want an error saying the server does not offer STARTTLS and naming -smtp-starttls=false", err)
	}
	if mail.Temporary(err) {
		t.Errorf("Temporary(%v) = true, want false (the configuration or the network path)", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("the server received %d messages in the clear, want 0", n)
	}
	s.NoStartTLS = true
	if err := s.Send(context.Background(), message(t)); err != nil {
		t.Fatalf("with NoStartTLS: %v", err)
	}
	if got := srv.Messages(); len(got) != 1 || got[0].TLS {
		t.Fatalf("with NoStartTLS the server received %+v, want one message in the clear", got)
	}
}

// SMTPS (port 465): TLS from the first byte, the certificate checked, and
// a server that does not speak TLS first (a submission port) is a
// configuration error, not retried.
func TestSMTPImplicitTLS(t *testing.T) {
	srv := mailtest.StartImplicitTLS(t, "mailer", "s3cret-password")
	s := &mail.SMTP{Addr: srv.Addr, Username: "mailer", Password: "s3cret-password", ImplicitTLS: true, Timeout: 5 * time.Second, TLSConfig: srv.ClientTLS}
	if err := s.Send(context.Background(), message(t)); err != nil {
		t.Fatal(err)
	}
	if got := srv.Messages(); len(got) != 1 || !got[0].TLS || got[0].User != "mailer" {
		t.Fatalf("the server received %+v, want one message over TLS, authenticated as mailer", got)
	}

	untrusted := *s
	untrusted.TLSConfig = nil
	starttls := mailtest.Start(t, "mailer", "s3cret-password")
	notTLS := *s
	notTLS.Addr = starttls.Addr
	for _, tt := range []struct {
		name string
		smtp *mail.SMTP
		want string
	}{
		{"certificate not trusted", &untrusted, "certificate"},
		{"a server that starts in the clear", &notTLS, "with TLS"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.smtp.Send(context.Background(), message(t))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Send = %v, want an error containing %q", err, tt.want)
			}
			if mail.Temporary(err) {
				t.Errorf("Temporary(%v) = true, want false (the configuration)", err)
			}
		})
	}
	if n := len(srv.Messages()) + len(starttls.Messages()); n != 1 {
		t.Fatalf("the servers received %d messages in all, want the first one only", n)
	}
}

func TestDirWritesEMLFiles(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2026, 12, 5, 10, 11, 12, 0, time.UTC)
	d := mail.Dir{Path: dir, Now: func() time.Time { return now }}
	for range 2 {
		if err := d.Send(context.Background(), message(t)); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("%d files in the pickup directory, want 2 (and no temporary file)", len(entries))
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "20261205T101112.000000Z-") || filepath.Ext(e.Name()) != ".eml" {
			t.Errorf("file %s, want 20261205T101112.000000Z-<random>.eml", e.Name())
		}
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600 (it holds a reset link)", e.Name(), info.Mode().Perm())
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h, body := parse(t, raw)
		if d, _ := h.Header.Date(); !d.Equal(now) {
			t.Errorf("Date %v, want %v", d, now)
		}
		if !strings.Contains(body, "token=pr_abc") {
			t.Errorf("body %q", body)
		}
	}
	if err := (mail.Dir{Path: filepath.Join(dir, "missing")}).Send(context.Background(), message(t)); err == nil || !mail.Temporary(err) {
		t.Fatalf("a missing directory: %v, want a temporary error", err)
	}
}

func TestMessageEncoding(t *testing.T) {
	m := message(t)
	m.Subject = "Réinitialiser"
	m.Body = "Bonjour, voilà le lien : https://app.example/" + strings.Repeat("x", 100) + "\n"
	raw, err := m.Bytes(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	h, _ := parse(t, raw)
	if got, _ := new(mime.WordDecoder).DecodeHeader(h.Header.Get("Subject")); got != "Réinitialiser" {
		t.Errorf("Subject %q decodes to %q", h.Header.Get("Subject"), got)
	}
	if h.Header.Get("Content-Transfer-Encoding") != "quoted-printable" {
		t.Errorf("a body that is not ASCII is %q", h.Header.Get("Content-Transfer-Encoding"))
	}
	// Addresses sign-up takes whose local part is no dot-atom: the To
	// header quotes it.
	for addr, want := range map[string]string{"user.@shop.example": `<"user."@shop.example>`, "a..b@shop.example": `<"a..b"@shop.example>`} {
		m := message(t)
		m.To = addr
		raw, err := m.Bytes(time.Now())
		if err != nil {
			t.Errorf("recipient %q: %v", addr, err)
			continue
		}
		if h, _ := parse(t, raw); h.Header.Get("To") != want {
			t.Errorf("recipient %q: To %q, want %q", addr, h.Header.Get("To"), want)
		}
	}
	for _, bad := range []string{"a@b.example\r\nBcc: x@y.example", "a\r\nBcc: x@y.example", `a"@b.example`, "Name <a@b.example>", "not an address"} {
		m := message(t)
		m.To = bad
		if _, err := m.Bytes(time.Now()); err == nil {
			t.Errorf("recipient %q accepted", bad)
		}
	}
}
