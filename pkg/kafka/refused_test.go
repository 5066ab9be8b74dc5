package kafka

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/IBM/sarama"
)

// TestRefusedForGood: the errors of a topic's creation that waiting cannot
// change, and those it may (kfake, which TestEnsureTopicsRefusedForGood
// runs against, answers only the replication factor of these).
func TestRefusedForGood(t *testing.T) {
	topicErr := func(k sarama.KError) error {
		return fmt.Errorf("create kafka topic hits: %w", &sarama.TopicError{Err: k})
	}
	tests := []struct {
		err  error
		want bool
	}{
		{topicErr(sarama.ErrInvalidReplicationFactor), true},
		{topicErr(sarama.ErrInvalidConfig), true},
		{topicErr(sarama.ErrInvalidPartitions), true},
		{topicErr(sarama.ErrPolicyViolation), true},
		{topicErr(sarama.ErrTopicAuthorizationFailed), true},
		{topicErr(sarama.ErrNotController), false},
		{topicErr(sarama.ErrLeaderNotAvailable), false},
		{topicErr(sarama.ErrRequestTimedOut), false},
		{fmt.Errorf("create kafka topic hits: %w", sarama.ErrOutOfBrokers), false},
		{fmt.Errorf("create kafka topic hits: %w", io.EOF), false},
		{errors.New("dial tcp 127.0.0.1:9092: connect: connection refused"), false},
	}
	for _, tt := range tests {
		if got := refusedForGood(tt.err); got != tt.want {
			t.Errorf("refusedForGood(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
