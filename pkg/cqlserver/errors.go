package cqlserver

import (
	"errors"
	"fmt"

	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// cqlError is an error that is sent to the client as an ERROR message with
// a native-protocol error code. Everything the executor refuses is a
// cqlError; any other error reaching the protocol layer becomes a
// ServerError.
type cqlError struct {
	code primitive.ErrorCode
	msg  string

	keyspace, table string // AlreadyExists
	id              []byte // Unprepared
}

func (e *cqlError) Error() string { return e.msg }

func errInvalid(format string, args ...any) error {
	return &cqlError{code: primitive.ErrorCodeInvalid, msg: fmt.Sprintf(format, args...)}
}

func errSyntax(msg string) error {
	return &cqlError{code: primitive.ErrorCodeSyntaxError, msg: msg}
}

func errConfig(format string, args ...any) error {
	return &cqlError{code: primitive.ErrorCodeConfigError, msg: fmt.Sprintf(format, args...)}
}

func errAlreadyExists(keyspace, table, msg string) error {
	return &cqlError{code: primitive.ErrorCodeAlreadyExists, msg: msg, keyspace: keyspace, table: table}
}

func errUnprepared(id []byte) error {
	return &cqlError{code: primitive.ErrorCodeUnprepared, msg: fmt.Sprintf("Prepared query with ID %x not found (either the query was not prepared on this host (maybe the host has been restarted?) or you have prepared too many queries and it has been evicted from the internal cache)", id), id: id}
}

func errProtocol(format string, args ...any) error {
	return &cqlError{code: primitive.ErrorCodeProtocolError, msg: fmt.Sprintf(format, args...)}
}

// errUnavailable is what every request gets while the server is made
// unavailable with SetUnavailable.
var errUnavailable = &cqlError{code: primitive.ErrorCodeUnavailable, msg: "Cannot achieve consistency level ONE"}

// errTimeoutMessage is the message of the timeouts SetFault's TimeoutAfter
// answers.
const errTimeoutMessage = "Operation timed out - received only 0 responses."

// errFilteringRequired is Cassandra's exact refusal of a query that would
// need to filter rows.
const errFilteringRequired = "Cannot execute this query as it might involve data filtering and thus may have unpredictable performance. If you want to execute this query despite the performance unpredictability, use ALLOW FILTERING"

// toMessage converts an error into the ERROR message sent to the client.
func toMessage(err error, consistency primitive.ConsistencyLevel) message.Message {
	var ce *cqlError
	if !errors.As(err, &ce) {
		return &message.ServerError{ErrorMessage: err.Error()}
	}
	switch ce.code {
	case primitive.ErrorCodeInvalid:
		return &message.Invalid{ErrorMessage: ce.msg}
	case primitive.ErrorCodeSyntaxError:
		return &message.SyntaxError{ErrorMessage: ce.msg}
	case primitive.ErrorCodeConfigError:
		return &message.ConfigError{ErrorMessage: ce.msg}
	case primitive.ErrorCodeAlreadyExists:
		return &message.AlreadyExists{ErrorMessage: ce.msg, Keyspace: ce.keyspace, Table: ce.table}
	case primitive.ErrorCodeUnprepared:
		return &message.Unprepared{ErrorMessage: ce.msg, Id: ce.id}
	case primitive.ErrorCodeProtocolError:
		return &message.ProtocolError{ErrorMessage: ce.msg}
	case primitive.ErrorCodeUnavailable:
		return &message.Unavailable{ErrorMessage: ce.msg, Consistency: consistency, Required: 1, Alive: 0}
	}
	return &message.ServerError{ErrorMessage: ce.msg}
}
