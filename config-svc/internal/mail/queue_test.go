package mail_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/acme/analytics/config-svc/internal/mail"
	"github.com/acme/analytics/config-svc/internal/mail/mailtest"
	"github.com/acme/analytics/pkg/logtest"
	"github.com/acme/analytics/pkg/retry"
	"github.com/prometheus/client_golang/prometheus"
)

// outcomes returns config_mail_messages_total of reg by outcome.
func outcomes(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "config_mail_messages_total" {
			for _, m := range mf.GetMetric() {
				out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// At shutdown the queue sends what it holds before Run returns; what is
// queued afterwards is dropped and counted.
func TestQueueDrainsAtShutdown(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	q := mail.NewQueue(mail.Dir{Path: dir}, mail.QueueConfig{Size: 10, Workers: 2}, slog.New(slog.DiscardHandler), reg)
	for range 5 {
		if !q.Enqueue(message(t)) {
			t.Fatal("Enqueue refused a message with room in the queue")
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // shutdown began before the workers took anything
	if err := q.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "*.eml")); len(files) != 5 {
		t.Fatalf("%d messages written at shutdown, want the 5 queued", len(files))
	}
	if q.Enqueue(message(t)) {
		t.Fatal("Enqueue took a message after Run returned")
	}
	if got := outcomes(t, reg); got[mail.OutcomeSent] != 5 || got[mail.OutcomeShutdown] != 1 {
		t.Fatalf("outcomes %v, want 5 sent and 1 shutdown", got)
	}
}

// The drain is bounded: a message still failing temporarily when it ends
// is given up, and those not begun are dropped; each is logged with its
// attributes and counted as shutdown.
func TestQueueDrainIsBounded(t *testing.T) {
	srv := mailtest.Start(t, "", "")
	srv.Refuse(451, "try again later")
	reg := prometheus.NewRegistry()
	var logs logtest.Buffer
	q := mail.NewQueue(&mail.SMTP{Addr: srv.Addr, Timeout: 5 * time.Second, TLSConfig: srv.ClientTLS},
		mail.QueueConfig{Size: 10, Workers: 1, Drain: 300 * time.Millisecond, Backoff: retry.Backoff{Min: 20 * time.Millisecond, Max: 50 * time.Millisecond}},
		slog.New(slog.NewTextHandler(&logs, nil)), reg)
	for i := range 3 {
		q.Enqueue(message(t), slog.String("user_id", fmt.Sprint("u", i)))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := q.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Run took %s to stop, past its 300ms drain", took)
	}
	if got := outcomes(t, reg); got[mail.OutcomeShutdown] != 3 || got[mail.OutcomeSent] != 0 {
		t.Fatalf("outcomes %v, want 3 shutdown", got)
	}
	out := logs.String()
	for i := range 3 {
		if !strings.Contains(out, fmt.Sprintf(`msg="e-mail dropped unsent at shutdown" user_id=u%d`, i)) {
			t.Errorf("no drop logged for u%d:\n%s", i, out)
		}
	}
	if !strings.Contains(out, `msg="the e-mail sender stopped with messages unsent" dropped=3`) {
		t.Errorf("no summary of the dropped messages:\n%s", out)
	}
	if strings.Contains(out, "pr_abc") {
		t.Errorf("the message's token in the log:\n%s", out)
	}
}
