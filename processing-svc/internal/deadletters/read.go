// Package deadletters reads the dead-letter topic (hit.TopicDeadLetter)
// for an operator, and puts the hits processing rejected back on the hits
// topic once the cause is fixed: the deadletters command
// (docs/operations.md, "Investigating missing hits: the dead-letter
// topic").
//
// It reads partitions directly, without a consumer group: it commits no
// offset and takes no partition from anyone, so it can run at any time
// beside the services.
package deadletters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/acme/analytics/pkg/hit"
	"github.com/acme/analytics/pkg/retry"
)

// Position is where a dead letter itself is in the dead-letter topic (not
// where the message it rejected was: that is the letter's own Partition
// and Offset, for processing's).
type Position struct {
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"` // the record's timestamp: when it was published
}

// Letter is a dead letter as read from the topic. Err is set, and
// DeadLetter empty, for a record that is not a dead letter's JSON.
type Letter struct {
	At Position `json:"at"`
	hit.DeadLetter
	Err string `json:"error,omitempty"`
}

// MarshalJSON writes at, the dead letter's fields as hit.DeadLetter writes
// them (a processing letter's partition and offset even when 0), and
// error. Without it Letter would take the embedded DeadLetter's
// MarshalJSON for its own and write the dead letter alone.
func (l Letter) MarshalJSON() ([]byte, error) {
	at, err := json.Marshal(l.At)
	if err != nil {
		return nil, err
	}
	dl, err := json.Marshal(l.DeadLetter)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.WriteString(`{"at":`)
	b.Write(at)
	if inner := bytes.TrimSpace(dl[1 : len(dl)-1]); len(inner) > 0 { // dl is an object
		b.WriteByte(',')
		b.Write(inner)
	}
	if l.Err != "" {
		e, err := json.Marshal(l.Err)
		if err != nil {
			return nil, err
		}
		b.WriteString(`,"error":`)
		b.Write(e)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// Filter selects dead letters; an empty field selects every value.
type Filter struct {
	TrackingID string
	Reason     string
	Stage      string
}

// Match reports whether l passes f. A record that is not a dead letter
// passes only a filter that selects everything.
func (f Filter) Match(l *Letter) bool {
	if l.Err != "" {
		return f == Filter{}
	}
	return (f.TrackingID == "" || l.TrackingID == f.TrackingID) &&
		(f.Reason == "" || l.Reason == f.Reason) &&
		(f.Stage == "" || l.Stage == f.Stage)
}

// Range says what Read reads: every partition from the first record
// published at or after Since, to the end the topic had when Read started,
// or on and on with Follow.
type Range struct {
	Since  time.Time
	Follow bool

	// With Follow, a partition whose read fails (a broker gone, a fetch
	// refused) is read again from where it stopped, after Backoff's wait
	// (zero: retry.Default), each failure logged to Log at warn (nil:
	// nowhere), as the services log theirs ("... failed; retrying").
	Backoff retry.Backoff
	Log     *slog.Logger
}

// Read calls fn with each dead letter of topic in r, from every partition
// at once (in offset order within a partition, interleaved across them),
// one call at a time. It returns when every partition reached its end (not
// with Follow), when ctx ends (with nil: an operator's interrupt of a
// follow is its normal end) or at fn's first error, which it returns.
// Without Follow a failed read ends it with that error; with Follow only
// a failure before the reading starts does (finding the partitions and
// their offsets: the operator sees an outage at once), and a later one is
// retried until ctx ends.
func Read(ctx context.Context, client sarama.Client, topic string, r Range, fn func(*Letter) error) error {
	parts, err := client.Partitions(topic)
	if err != nil {
		return fmt.Errorf("partitions of %s: %w", topic, err)
	}
	type bounds struct {
		partition  int32
		start, end int64
	}
	var todo []bounds
	for _, p := range parts {
		end, err := client.GetOffset(topic, p, sarama.OffsetNewest)
		if err != nil {
			return fmt.Errorf("end offset of %s/%d: %w", topic, p, err)
		}
		start, err := client.GetOffset(topic, p, r.Since.UnixMilli())
		if err != nil {
			return fmt.Errorf("offset of %s/%d at %s: %w", topic, p, r.Since.Format(time.RFC3339), err)
		}
		if start < 0 { // no record at or after Since
			start = end
		}
		if start < end || r.Follow {
			todo = append(todo, bounds{p, start, end})
		}
	}
	if len(todo) == 0 {
		return nil
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fmt.Errorf("kafka consumer: %w", err)
	}
	defer consumer.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	letters := make(chan *Letter)
	errs := make(chan error, len(todo))
	var wg sync.WaitGroup
	for _, b := range todo {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- readPartition(ctx, consumer, topic, b.partition, b.start, b.end, r, letters)
		}()
	}
	go func() { wg.Wait(); close(letters) }()
	var ferr error
	for l := range letters {
		if ferr == nil {
			if ferr = fn(l); ferr != nil {
				cancel() // the readers stop; drain what they still send
			}
		}
	}
	if ferr != nil {
		return ferr
	}
	for range todo {
		if err := <-errs; err != nil {
			return err
		}
	}
	return nil
}

// readPartition sends the letters of one partition from start until end
// (the offset after the last to read), or on with r.Follow, or until ctx
// ends. With r.Follow a failed read is logged and the partition read again
// from the first letter not yet sent, after a backoff that starts over
// once a letter came.
func readPartition(ctx context.Context, consumer sarama.Consumer, topic string, partition int32, start, end int64, r Range, out chan<- *Letter) error {
	backoff, log := r.Backoff, r.Log
	if backoff == (retry.Backoff{}) {
		backoff = retry.Default
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	next := start
	for failed := 0; ; {
		from := next
		var err error
		next, err = readFrom(ctx, consumer, topic, partition, next, end, r.Follow, out)
		if err == nil || ctx.Err() != nil {
			return nil
		}
		if !r.Follow {
			return err
		}
		if next != from {
			failed = 0
		}
		failed++
		if errors.Is(err, sarama.ErrOffsetOutOfRange) {
			// The letters from next on were deleted (the topic's
			// retention) while it was not read: go on with the oldest.
			next = sarama.OffsetOldest
		}
		wait := backoff.Wait(failed)
		log.Warn(fmt.Sprintf("read %s/%d failed; retrying", topic, partition), slog.Any("error", err),
			slog.Int("attempt", failed), slog.Duration("retry_in", wait.Round(time.Millisecond)), slog.Int64("from_offset", next))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// readFrom is one read of readPartition, from offset next: it returns the
// offset after the last letter sent, and nil at the end, when ctx ends, or
// the read's first error.
func readFrom(ctx context.Context, consumer sarama.Consumer, topic string, partition int32, next, end int64, follow bool, out chan<- *Letter) (int64, error) {
	pc, err := consumer.ConsumePartition(topic, partition, next)
	if err != nil {
		return next, fmt.Errorf("read %s/%d from offset %d: %w", topic, partition, next, err)
	}
	for {
		select {
		case <-ctx.Done():
			pc.AsyncClose()
			return next, nil
		case err := <-pc.Errors():
			if err != nil {
				// Closed before it returns: the partition is read again
				// by a new partition consumer, and sarama takes no second
				// one while this one lives.
				_ = pc.Close()
				return next, fmt.Errorf("read partition %d: %w", partition, err.Err)
			}
		case m, ok := <-pc.Messages():
			if !ok {
				// sarama gave up on the partition (its error, if any, is
				// on Errors, which Close returns): before the end, or at
				// any time of a follow, that is a failure, never a short
				// list that looks complete.
				cerr := pc.Close()
				if ctx.Err() != nil || (!follow && next >= end) {
					return next, nil
				}
				if cerr == nil {
					cerr = errStopped
				}
				return next, fmt.Errorf("read partition %d: the partition consumer stopped at offset %d: %w", partition, next, cerr)
			}
			if !follow && m.Offset >= end {
				pc.AsyncClose()
				return next, nil
			}
			l := decode(m)
			select {
			case out <- l:
				next = m.Offset + 1
			case <-ctx.Done():
				pc.AsyncClose()
				return next, nil
			}
			if !follow && m.Offset+1 >= end {
				pc.AsyncClose()
				return next, nil
			}
		}
	}
}

// errStopped is why a read ended when sarama closed a partition consumer
// without saying why.
var errStopped = errors.New("closed without an error")

func decode(m *sarama.ConsumerMessage) *Letter {
	l := &Letter{At: Position{Partition: m.Partition, Offset: m.Offset, Time: m.Timestamp.UTC()}}
	if err := json.Unmarshal(m.Value, &l.DeadLetter); err != nil {
		l.DeadLetter = hit.DeadLetter{}
		l.Err = fmt.Sprintf("not a dead letter: %v", err)
	}
	return l
}
