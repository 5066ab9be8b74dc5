package httpapi

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	netmail "net/mail"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/mail"
	"github.com/acme/analytics/config-svc/internal/mail/mailtest"
	"github.com/acme/analytics/pkg/eventually"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/retry"
	"github.com/prometheus/client_golang/prometheus"
)

// advance moves the clock forward by d.
func (c *testClock) advance(d time.Duration) { c.set(c.now().Add(d)) }

const resetURL = "https://app.example/reset-password?token={token}"

// mailEnv starts an instance that writes its mail into a pickup directory
// it returns, on clock.
func mailEnv(t *testing.T, clock *testClock) (*env, string) {
	dir := t.TempDir()
	e := newEnv(t, func(o *Options) {
		o.Mailer = startMailer(t, mail.Dir{Path: dir}, mail.QueueConfig{}, o.Registerer, nil)
		o.MailFrom, o.PasswordResetURL, o.EmailVerificationURL, o.Now = testFrom(t), resetURL, verifyURL, clock.now
	})
	return e, dir
}

func testFrom(t *testing.T) *netmail.Address {
	from, err := mail.ParseFrom("Acme Analytics <no-reply@acme.example>")
	if err != nil {
		t.Fatal(err)
	}
	return from
}

// fastRetries is the backoff of the tests' mail queues.
var fastRetries = retry.Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}

// startMailer runs a mail queue sending with s, with fastRetries unless c
// has a backoff, its metrics on reg and its log into logs (nil: none),
// until the end of the test.
func startMailer(t *testing.T, s mail.Sender, c mail.QueueConfig, reg prometheus.Registerer, logs *logtest.Buffer) *mail.Queue {
	t.Helper()
	if c.Backoff == (retry.Backoff{}) {
		c.Backoff = fastRetries
	}
	var w io.Writer = io.Discard
	if logs != nil {
		w = logs
	}
	q := mail.NewQueue(s, c, slog.New(slog.NewTextHandler(w, nil)), reg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return q
}

// metric is the value of the counter or gauge name of the instance, with
// the label outcome when it is not "".
func (e *env) metric(name, outcome string) float64 {
	e.t.Helper()
	mfs, err := e.feedRegistry.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if outcome != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != outcome) {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

var resetLink = regexp.MustCompile(`https://app\.example/reset-password\?token=(pr_[A-Za-z0-9_-]{43})\r\n`)

// readMail parses a message and returns its recipient and the token of
// its reset link.
func readMail(t *testing.T, raw []byte) (to, token string) {
	t.Helper()
	m, err := netmail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("read message: %v\n%s", err, raw)
	}
	if got := m.Header.Get("Subject"); got != resetSubject {
		t.Errorf("Subject %q", got)
	}
	if got := m.Header.Get("From"); got != `"Acme Analytics" <no-reply@acme.example>` {
		t.Errorf("From %q", got)
	}
	body, _ := io.ReadAll(m.Body)
	match := resetLink.FindSubmatch(body)
	if match == nil {
		t.Fatalf("no reset link in the message:\n%s", raw)
	}
	addr, err := netmail.ParseAddress(m.Header.Get("To"))
	if err != nil {
		t.Fatal(err)
	}
	return addr.Address, string(match[1])
}

// mails returns the messages in the pickup directory, oldest first.
func mails(t *testing.T, dir string) [][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, f := range files { // named by time: sorted
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// requestReset asks for a reset link for email and returns its token,
// the one new reset message in dir once it has come.
func (e *env) requestReset(dir, email string) string {
	e.t.Helper()
	before := len(mailsAbout(e.t, dir, resetSubject))
	var resp PasswordResetResponse
	e.must(http.StatusAccepted, anonymous, "POST", "/v1/password-reset", map[string]string{"email": email}).decode(e.t, &resp)
	if !strings.Contains(resp.Message, "if an account has this e-mail address") || !strings.Contains(resp.Message, "within 1 hour") {
		e.t.Errorf("message %q", resp.Message)
	}
	var got [][]byte
	eventually.True(e.t, 10*time.Second, "the reset mail", func() bool {
		got = mailsAbout(e.t, dir, resetSubject)
		return len(got) > before
	})
	if len(got) != before+1 {
		e.t.Fatalf("%d messages after the request, want %d", len(got), before+1)
	}
	to, token := readMail(e.t, got[len(got)-1])
	if to != strings.ToLower(strings.TrimSpace(email)) {
		e.t.Fatalf("mailed to %q, want %q", to, email)
	}
	return token
}

func (e *env) confirmReset(want int, token, password string) response {
	e.t.Helper()
	return e.must(want, anonymous, "POST", "/v1/password-reset/confirm", map[string]string{"token": token, "password": password})
}

func wantInvalidResetToken(t *testing.T, r response) {
	t.Helper()
	if r.code != http.StatusBadRequest || r.apiError().Code != "invalid_reset_token" || !strings.Contains(r.apiError().Message, "ask for a new one") {
		t.Fatalf("%d %s, want 400 invalid_reset_token saying to ask for a new link", r.code, r.body)
	}
}

// The whole flow over HTTP: request, the mail in the pickup directory,
// its token, a refused password that does not use the link up, the new
// password; then the old password and the old sessions no longer work, and
// the link works no more.
func TestPasswordResetByMail(t *testing.T) {
	e, dir := mailEnv(t, newTestClock())
	a := e.signup("Reset")
	e.verify(dir, a)
	token := e.requestReset(dir, "  "+strings.ToUpper(a.email)+" ")

	if r := e.confirmReset(http.StatusBadRequest, token, "short"); r.apiError().Field != "password" {
		t.Fatalf("a short password: %s, want invalid_field password", r.body)
	}
	if r := e.confirmReset(http.StatusBadRequest, token, a.email); r.apiError().Field != "password" {
		t.Fatalf("the address as password: %s, want invalid_field password", r.body)
	}
	const newPassword = "a brand new password"
	e.confirmReset(http.StatusNoContent, token, newPassword)

	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": newPassword})
	e.must(http.StatusUnauthorized, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": a.password})
	if r := e.do(anonymous, "POST", "/v1/refresh", map[string]string{"refresh_token": a.tokens.RefreshToken}); r.code != http.StatusUnauthorized || r.apiError().Code != "invalid_refresh_token" {
		t.Fatalf("the refresh token of before the reset: %d %s, want 401 invalid_refresh_token", r.code, r.body)
	}
	wantInvalidResetToken(t, e.do(anonymous, "POST", "/v1/password-reset/confirm", map[string]string{"token": token, "password": "yet another password"}))

	for _, body := range []any{
		map[string]string{"token": "rt_not-a-reset-token", "password": newPassword},
		map[string]string{"password": newPassword},
	} {
		if r := e.do(anonymous, "POST", "/v1/password-reset/confirm", body); r.code != http.StatusBadRequest || r.apiError().Field != "token" {
			t.Fatalf("%v: %d %s, want 400 invalid_field token", body, r.code, r.body)
		}
	}
	wantInvalidResetToken(t, e.do(anonymous, "POST", "/v1/password-reset/confirm", map[string]string{"token": "pr_made-up", "password": newPassword}))
}

// A link works once, also under concurrent use; it expires; using one
// link voids the user's others; a deleted user's link is refused.
func TestPasswordResetTokenLife(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)
	a := e.signup("Tokens")
	e.verify(dir, a)

	token := e.requestReset(dir, a.email)
	usedOnce(t, 8, http.StatusNoContent, func(i int) response {
		return e.do(anonymous, "POST", "/v1/password-reset/confirm", map[string]string{"token": token, "password": "concurrent password " + string(rune('a'+i))})
	})

	clock.advance(time.Minute) // past the throttle
	expiring := e.requestReset(dir, a.email)
	clock.advance(DefaultPasswordResetTTL)
	wantInvalidResetToken(t, e.do(anonymous, "POST", "/v1/password-reset/confirm", map[string]string{"token": expiring, "password": "too late password"}))

	clock.advance(2 * time.Minute)
	first := e.requestReset(dir, a.email)
	clock.advance(4 * time.Minute)
	second := e.requestReset(dir, a.email)
	e.confirmReset(http.StatusNoContent, second, "the second link's password")
	wantInvalidResetToken(t, e.do(anonymous, "POST", "/v1/password-reset/confirm", map[string]string{"token": first, "password": "the first link's password"}))

	v := e.addUser(a, "viewer")
	e.verify(dir, v)
	gone := e.requestReset(dir, v.email)
	e.must(http.StatusNoContent, a.as(), "DELETE", "/v1/users/"+v.tokens.UserID, nil)
	wantInvalidResetToken(t, e.do(anonymous, "POST", "/v1/password-reset/confirm", map[string]string{"token": gone, "password": "a deleted user's password"}))
}

// An address without an account answers as one with does and gets no mail;
// requests for an address are throttled alike, known or not; a malformed
// address is 400; a reset forgets the address's failed logins.
func TestPasswordResetRequests(t *testing.T) {
	clock := newTestClock()
	e, dir := mailEnv(t, clock)
	a := e.signup("Requests")
	e.verify(dir, a)
	e.requestReset(dir, a.email)

	var resp PasswordResetResponse
	e.must(http.StatusAccepted, anonymous, "POST", "/v1/password-reset", map[string]string{"email": "nobody@shop.example"}).decode(t, &resp)
	if !strings.Contains(resp.Message, "if an account has this e-mail address") {
		t.Errorf("message for an unknown address %q", resp.Message)
	}
	// Nothing is queued for it: the queue has handled two messages, sent
	// (the verification and the reset).
	if n, sent := len(mailsAbout(t, dir, resetSubject)), e.metric("config_mail_messages_total", mail.OutcomeSent); n != 1 || sent != 2 || e.metric("config_mail_queued", "") != 0 {
		t.Fatalf("%d reset messages (%v sent) after a request for an unknown address, want the 1 before", n, sent)
	}

	for _, addr := range []string{a.email, "nobody@shop.example"} {
		r := e.do(anonymous, "POST", "/v1/password-reset", map[string]string{"email": addr})
		if r.code != http.StatusTooManyRequests || r.apiError().Code != "too_many_attempts" || r.header.Get("Retry-After") != "60" {
			t.Fatalf("%s again at once: %d %s (Retry-After %q), want 429 too_many_attempts after 60 s", addr, r.code, r.body, r.header.Get("Retry-After"))
		}
	}
	clock.advance(time.Minute)
	token := e.requestReset(dir, a.email)
	if r := e.do(anonymous, "POST", "/v1/password-reset", map[string]string{"email": a.email}); r.code != http.StatusTooManyRequests || r.header.Get("Retry-After") != "120" {
		t.Fatalf("a third request: %d (Retry-After %q), want 429 after 120 s (the wait doubles)", r.code, r.header.Get("Retry-After"))
	}
	if n := len(mailsAbout(t, dir, resetSubject)); n != 2 {
		t.Fatalf("%d reset messages, want 2: the refused requests mail nothing", n)
	}

	for _, bad := range []any{map[string]string{"email": "not an address"}, map[string]string{"email": strings.Repeat("x", 300) + "@shop.example"}, map[string]string{}} {
		if r := e.do(anonymous, "POST", "/v1/password-reset", bad); r.code != http.StatusBadRequest || r.apiError().Field != "email" {
			t.Fatalf("%v: %d %s, want 400 invalid_field email", bad, r.code, r.body)
		}
	}
	if r := e.do(anonymous, "POST", "/v1/password-reset", map[string]string{"email": a.email, "password": "x"}); r.code != http.StatusBadRequest || r.apiError().Code != "unknown_field" {
		t.Fatalf("an unknown field: %d %s", r.code, r.body)
	}

	for range freeLoginFailures {
		e.must(http.StatusUnauthorized, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": "wrong password!"})
	}
	e.must(http.StatusTooManyRequests, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": a.password})
	e.confirmReset(http.StatusNoContent, token, "after the guesses")
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": "after the guesses"})
}

func TestPasswordResetWithoutMail(t *testing.T) {
	e := newEnv(t)
	a := e.signup("NoMail")
	r := e.do(anonymous, "POST", "/v1/password-reset", map[string]string{"email": a.email})
	if r.code != http.StatusServiceUnavailable || r.apiError().Code != "mail_not_configured" || !strings.Contains(r.apiError().Message, "no mail delivery configured") {
		t.Fatalf("%d %s, want 503 mail_not_configured", r.code, r.body)
	}
	// Without Retry-After the gateway counts a 503 as the instance failing:
	// five such requests in a row, which anyone may send, would open the
	// breaker of a healthy instance and take the whole config API with it.
	if got := r.header.Get("Retry-After"); got == "" {
		t.Errorf("mail_not_configured without Retry-After, want one (a 503 the gateway's breaker excludes)")
	}
}

// Through a real SMTP server: the message arrives with its link over TLS
// with authentication; a temporary refusal (451) is retried until the
// server takes the message; a permanent one (550) is given up at once,
// counted and logged with the user's ID, never the token. Each request is
// answered 202.
func TestPasswordResetBySMTP(t *testing.T) {
	srv := mailtest.Start(t, "mailer", "smtp password")
	clock := newTestClock()
	var logs logtest.Buffer
	e := newEnv(t, func(o *Options) {
		o.Mailer = startMailer(t, &mail.SMTP{Addr: srv.Addr, Username: "mailer", Password: "smtp password", Timeout: 5 * time.Second, TLSConfig: srv.ClientTLS},
			mail.QueueConfig{}, o.Registerer, &logs)
		o.MailFrom, o.PasswordResetURL, o.Now = testFrom(t), resetURL, clock.now
	})
	// Made through an instance without mail, so that the server receives
	// only the resets.
	a := e.sibling().signup("SMTP")
	e.markVerified(a)
	received := func(n int) []mailtest.Message {
		t.Helper()
		var got []mailtest.Message
		eventually.True(t, 10*time.Second, "the server receives the reset mail", func() bool {
			got = srv.Messages()
			return len(got) >= n
		})
		if len(got) != n {
			t.Fatalf("the server received %d messages, want %d", len(got), n)
		}
		return got
	}
	e.must(http.StatusAccepted, anonymous, "POST", "/v1/password-reset", map[string]string{"email": a.email})
	got := received(1)
	if !got[0].TLS || got[0].User != "mailer" || got[0].From != "no-reply@acme.example" || len(got[0].To) != 1 || got[0].To[0] != a.email {
		t.Fatalf("the server received %+v", got)
	}
	if to, _ := readMail(t, got[0].Data); to != a.email {
		t.Fatalf("To %q", to)
	}

	clock.advance(time.Minute)
	srv.Refuse(451, "try again later")
	e.must(http.StatusAccepted, anonymous, "POST", "/v1/password-reset", map[string]string{"email": a.email})
	eventually.True(t, 10*time.Second, "the refused send retried", func() bool {
		return strings.Count(logs.String(), `msg="send an e-mail failed; retrying" `) >= 2 && strings.Contains(logs.String(), "smtp RCPT TO: 451")
	})
	srv.Refuse(0, "")
	_, token := readMail(t, received(2)[1].Data)

	clock.advance(2 * time.Minute)
	srv.Refuse(550, "no such mailbox")
	e.must(http.StatusAccepted, anonymous, "POST", "/v1/password-reset", map[string]string{"email": a.email})
	eventually.True(t, 10*time.Second, "the refused mail counted", func() bool { return e.metric("config_mail_messages_total", mail.OutcomeFailed) == 1 })
	srv.Refuse(0, "")
	if n := len(srv.Messages()); n != 2 {
		t.Fatalf("the server received %d messages, want the 2 before the 550", n)
	}
	if got := e.metric("config_mail_messages_total", mail.OutcomeSent); got != 2 {
		t.Errorf("%v mails counted sent, want 2", got)
	}
	var refused string
	for line := range strings.SplitSeq(logs.String(), "\n") {
		if strings.Contains(line, `msg="e-mail not sent: refused for good"`) {
			refused = line
		}
	}
	if !strings.Contains(refused, "user_id="+a.tokens.UserID) || !strings.Contains(refused, "550") || !strings.Contains(refused, "no such mailbox") {
		t.Errorf("the permanent failure logged as %q, want a line with the user's ID and the reply", refused)
	}
	if tok := regexp.MustCompile(`pr_[A-Za-z0-9_-]{43}`).FindString(logs.String()); tok != "" {
		t.Errorf("a reset token in the mail queue's log: %s", tok)
	}

	// The link mailed after its retries works.
	e.confirmReset(http.StatusNoContent, token, "set through smtp")
	e.must(http.StatusOK, anonymous, "POST", "/v1/login", map[string]string{"email": a.email, "password": "set through smtp"})
}

// hangingMailServer listens on loopback and takes connections without ever
// answering (a mail server that hangs); it returns its address and the
// connections taken so far.
func hangingMailServer(t *testing.T) (string, func() int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String(), func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(conns)
	}
}

// A known and an unknown address get the same answer (status, headers,
// body), at once, whatever the mail server does: takes the mail, refuses
// it for good or for now, or hangs (a send would take its -smtp-timeout,
// a minute here).
func TestPasswordResetAnswersAlike(t *testing.T) {
	tests := []struct {
		name   string
		server func(t *testing.T) mail.Sender
	}{
		{"accepting", func(t *testing.T) mail.Sender {
			srv := mailtest.StartWithoutTLS(t)
			return &mail.SMTP{Addr: srv.Addr, NoStartTLS: true, Timeout: time.Minute}
		}},
		{"refusing for good", func(t *testing.T) mail.Sender {
			srv := mailtest.StartWithoutTLS(t)
			srv.Refuse(550, "no such mailbox")
			return &mail.SMTP{Addr: srv.Addr, NoStartTLS: true, Timeout: time.Minute}
		}},
		{"refusing for now", func(t *testing.T) mail.Sender {
			srv := mailtest.StartWithoutTLS(t)
			srv.Refuse(451, "try again later")
			return &mail.SMTP{Addr: srv.Addr, NoStartTLS: true, Timeout: time.Minute}
		}},
		{"hanging", func(t *testing.T) mail.Sender {
			addr, _ := hangingMailServer(t)
			return &mail.SMTP{Addr: addr, NoStartTLS: true, Timeout: time.Minute}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sender := tt.server(t)
			e := newEnv(t, func(o *Options) {
				o.Mailer = startMailer(t, sender, mail.QueueConfig{Drain: 100 * time.Millisecond}, o.Registerer, nil)
				o.MailFrom, o.PasswordResetURL = testFrom(t), resetURL
			})
			a := e.sibling().signup("Alike")
			e.markVerified(a)
			start := time.Now()
			known := e.do(anonymous, "POST", "/v1/password-reset", map[string]string{"email": a.email})
			unknown := e.do(anonymous, "POST", "/v1/password-reset", map[string]string{"email": "nobody." + a.email})
			if took := time.Since(start); took > 20*time.Second {
				t.Errorf("the two requests took %s: one waited for the mail", took)
			}
			if known.code != http.StatusAccepted || unknown.code != known.code || !bytes.Equal(unknown.body, known.body) {
				t.Fatalf("known address: %d %s; unknown: %d %s; want the same 202", known.code, known.body, unknown.code, unknown.body)
			}
			for _, h := range []http.Header{known.header, unknown.header} {
				h.Del("Date")
				h.Del("X-Request-Id")
			}
			if !reflect.DeepEqual(known.header, unknown.header) {
				t.Fatalf("headers differ: known %v, unknown %v", known.header, unknown.header)
			}
		})
	}
}

// A full queue drops the message (counted, and the request counted failed)
// and the answer is 202 all the same: the user may ask again after the
// throttle's wait.
func TestPasswordResetQueueFull(t *testing.T) {
	addr, taken := hangingMailServer(t)
	e := newEnv(t, func(o *Options) {
		o.Mailer = startMailer(t, &mail.SMTP{Addr: addr, NoStartTLS: true, Timeout: time.Minute},
			mail.QueueConfig{Size: 1, Workers: 1, Drain: 100 * time.Millisecond}, o.Registerer, nil)
		o.MailFrom, o.PasswordResetURL = testFrom(t), resetURL
	})
	other := e.sibling() // sends no mail into the queue under test
	a := other.signup("Full")
	b, c := other.addUser(a, "viewer"), other.addUser(a, "viewer")
	for _, u := range []account{a, b, c} {
		e.markVerified(u)
	}
	reset := func(email string) {
		t.Helper()
		e.must(http.StatusAccepted, anonymous, "POST", "/v1/password-reset", map[string]string{"email": email})
	}
	reset(a.email)
	eventually.True(t, 10*time.Second, "the worker sending the first mail", func() bool { return taken() == 1 && e.metric("config_mail_queued", "") == 0 })
	reset(b.email)
	if got := e.metric("config_mail_queued", ""); got != 1 {
		t.Fatalf("%v mails queued behind the one being sent, want 1", got)
	}
	reset(c.email)
	if got := e.metric("config_mail_messages_total", mail.OutcomeQueueFull); got != 1 {
		t.Fatalf("%v mails dropped with the queue full, want 1", got)
	}
	if got := e.metric("config_password_reset_requests_total", "failed"); got != 1 {
		t.Errorf("%v reset requests counted failed, want 1", got)
	}
	if got := e.metric("config_password_reset_requests_total", "queued"); got != 2 {
		t.Errorf("%v reset requests counted queued, want 2", got)
	}
}
