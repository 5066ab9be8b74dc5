package cqlserver

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/datastax/go-cassandra-native-protocol/frame"
	"github.com/datastax/go-cassandra-native-protocol/message"
	"github.com/datastax/go-cassandra-native-protocol/primitive"
)

// codec encodes and decodes frame bodies; it is stateless and shared.
var codec = frame.NewRawCodec()

// maxFrameBody is Cassandra's default native_transport_max_frame_size.
const maxFrameBody = 256 << 20

// maxInFlight bounds the requests a connection processes concurrently;
// the reader stops reading when it is reached.
const maxInFlight = 1024

// conn serves one client connection. A reader goroutine decodes frames and
// hands each request to its own goroutine (drivers multiplex many streams
// on one connection); responses are queued to a writer goroutine that
// batches them into as few syscalls as possible.
type conn struct {
	srv   *Server
	nc    net.Conn
	local *net.TCPAddr

	out       chan []byte
	closing   chan struct{}
	closeOnce sync.Once
	handlers  sync.WaitGroup
	slots     chan struct{}

	ksMu     sync.Mutex
	keyspace string

	wantsSchemaEvents atomic.Bool
	// authenticated is set once the client has logged in, when the
	// server has Credentials.
	authenticated atomic.Bool
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{srv: s, nc: nc, out: make(chan []byte, 256), closing: make(chan struct{}), slots: make(chan struct{}, maxInFlight)}
	if a, ok := nc.LocalAddr().(*net.TCPAddr); ok {
		c.local = a
	}
	return c
}

func (c *conn) close() {
	c.closeOnce.Do(func() {
		close(c.closing)
		c.nc.Close()
	})
}

// serve runs the connection until the client leaves or the server stops.
func (c *conn) serve() {
	log := c.srv.log.With(slog.String("client", c.nc.RemoteAddr().String()))
	log.Debug("client connected")
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	err := c.readLoop()
	c.close()
	c.handlers.Wait()
	<-writerDone
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		log.Debug("client connection ended", slog.Any("err", err))
	} else {
		log.Debug("client disconnected")
	}
}

func (c *conn) writeLoop() {
	bw := bufio.NewWriterSize(c.nc, 64<<10)
	for {
		select {
		case b := <-c.out:
			// Write every frame queued by now, then flush them at once.
			for more := true; more; {
				if _, err := bw.Write(b); err != nil {
					c.close()
					return
				}
				select {
				case b = <-c.out:
				default:
					more = false
				}
			}
			if err := bw.Flush(); err != nil {
				c.close()
				return
			}
		case <-c.closing:
			return
		}
	}
}

// send queues an encoded frame, dropping it if the connection is closing.
func (c *conn) send(b []byte) {
	select {
	case c.out <- b:
	case <-c.closing:
	}
}

// header is a decoded frame header.
type header struct {
	version  byte
	flags    byte
	stream   int16
	opcode   byte
	bodySize int
}

func (c *conn) readLoop() error {
	br := bufio.NewReaderSize(c.nc, 64<<10)
	var hb [9]byte
	for {
		if _, err := io.ReadFull(br, hb[:1]); err != nil {
			return err
		}
		version := hb[0] & 0x7f
		// Protocol v1 and v2 have a one-byte stream id (8-byte header).
		n := 9
		if version < 3 {
			n = 8
		}
		if _, err := io.ReadFull(br, hb[1:n]); err != nil {
			return err
		}
		h := header{version: version, flags: hb[1]}
		if n == 8 {
			h.stream, h.opcode = int16(int8(hb[2])), hb[3]
			h.bodySize = int(int32(binary.BigEndian.Uint32(hb[4:8])))
		} else {
			h.stream, h.opcode = int16(binary.BigEndian.Uint16(hb[2:4])), hb[4]
			h.bodySize = int(int32(binary.BigEndian.Uint32(hb[5:9])))
		}
		if h.bodySize < 0 || h.bodySize > maxFrameBody {
			return fmt.Errorf("frame body of %d bytes exceeds the limit", h.bodySize)
		}
		if version != 4 {
			// Answer in the client's own version so that it can read the
			// error and negotiate down, as Cassandra does.
			if _, err := br.Discard(h.bodySize); err != nil {
				return err
			}
			c.sendProtocolVersionError(h)
			continue
		}
		body := make([]byte, h.bodySize)
		if _, err := io.ReadFull(br, body); err != nil {
			return err
		}
		select {
		case c.slots <- struct{}{}:
		case <-c.closing:
			return net.ErrClosed
		}
		c.handlers.Add(1)
		go func() {
			defer func() {
				<-c.slots
				c.handlers.Done()
			}()
			c.handle(h, body)
		}()
	}
}

// sendProtocolVersionError answers a frame of an unsupported version.
func (c *conn) sendProtocolVersionError(h header) {
	msg := fmt.Sprintf("Invalid or unsupported protocol version (%d); the lowest supported version is 4 and the greatest is 4", h.version)
	body := &bytes.Buffer{}
	primitive.WriteInt(int32(primitive.ErrorCodeProtocolError), body)
	primitive.WriteString(msg, body)
	var out []byte
	if h.version < 3 {
		out = []byte{0x80 | h.version, 0, byte(h.stream), byte(primitive.OpCodeError)}
	} else {
		out = []byte{0x80 | h.version, 0}
		out = binary.BigEndian.AppendUint16(out, uint16(h.stream))
		out = append(out, byte(primitive.OpCodeError))
	}
	out = binary.BigEndian.AppendUint32(out, uint32(body.Len()))
	out = append(out, body.Bytes()...)
	c.send(out)
}

func (c *conn) currentKeyspace() string {
	c.ksMu.Lock()
	defer c.ksMu.Unlock()
	return c.keyspace
}

// handle decodes and answers one request.
func (c *conn) handle(h header, body []byte) {
	fh := &frame.Header{
		Version:    primitive.ProtocolVersion4,
		Flags:      primitive.HeaderFlag(h.flags),
		StreamId:   h.stream,
		OpCode:     primitive.OpCode(h.opcode),
		BodyLength: int32(len(body)),
	}
	var resp message.Message
	consistency := primitive.ConsistencyLevelOne
	if fh.Flags.Contains(primitive.HeaderFlagCompressed) {
		resp = toMessage(errProtocol("Compression is not supported by this server"), consistency)
	} else if b, err := codec.DecodeBody(fh, bytes.NewReader(body)); err != nil {
		resp = toMessage(errProtocol("%s", err.Error()), consistency)
	} else {
		resp = c.dispatch(b.Message, &consistency)
	}
	f := frame.NewFrame(primitive.ProtocolVersion4, h.stream, resp)
	var buf bytes.Buffer
	if err := codec.EncodeFrame(f, &buf); err != nil {
		c.srv.log.Error("encode response", slog.Any("err", err), slog.String("response", fmt.Sprint(resp)))
		f = frame.NewFrame(primitive.ProtocolVersion4, h.stream, &message.ServerError{ErrorMessage: "encode response: " + err.Error()})
		buf.Reset()
		if err := codec.EncodeFrame(f, &buf); err != nil {
			return
		}
	}
	c.send(buf.Bytes())
}

// passwordAuthenticator is the authenticator class Cassandra names in its
// AUTHENTICATE message, which drivers check before sending credentials.
const passwordAuthenticator = "org.apache.cassandra.auth.PasswordAuthenticator"

// login checks a SASL PLAIN token (NUL, username, NUL, password), as
// Cassandra's PasswordAuthenticator does, and answers with Cassandra's
// messages.
func (c *conn) login(token []byte) message.Message {
	parts := bytes.Split(token, []byte{0})
	if len(parts) != 3 {
		return &message.AuthenticationError{ErrorMessage: "Authentication failed: malformed credentials"}
	}
	user, password := string(parts[1]), string(parts[2])
	if want, ok := c.srv.cfg.Credentials[user]; !ok || want != password {
		return &message.AuthenticationError{ErrorMessage: fmt.Sprintf("Provided username %s and/or password are incorrect", user)}
	}
	c.authenticated.Store(true)
	return &message.AuthSuccess{}
}

// sendEvent pushes a server event (stream -1). Events are advisory, so
// one is dropped rather than waited for when the client is not reading.
func (c *conn) sendEvent(ev message.Message) {
	f := frame.NewFrame(primitive.ProtocolVersion4, -1, ev)
	var buf bytes.Buffer
	if err := codec.EncodeFrame(f, &buf); err != nil {
		c.srv.log.Error("encode event", slog.Any("err", err))
		return
	}
	select {
	case c.out <- buf.Bytes():
	default:
		c.srv.log.Debug("dropped schema event for a slow client")
	}
}

// dispatch executes a request message and returns the response message.
func (c *conn) dispatch(req message.Message, consistency *primitive.ConsistencyLevel) message.Message {
	s := c.srv
	sess := &session{keyspace: c.currentKeyspace(), local: c.local}
	fail := func(err error) message.Message { return toMessage(err, *consistency) }
	switch m := req.(type) {
	case *message.Options:
		return &message.Supported{Options: map[string][]string{
			"CQL_VERSION":       {"3.4.6"},
			"COMPRESSION":       {},
			"PROTOCOL_VERSIONS": {"4/v4"},
		}}
	case *message.Startup:
		if comp, ok := m.Options[message.StartupOptionCompression]; ok && comp != "" {
			return fail(errProtocol("Unknown compression algorithm: %s", comp))
		}
		if len(s.cfg.Credentials) > 0 {
			return &message.Authenticate{Authenticator: passwordAuthenticator}
		}
		return &message.Ready{}
	case *message.AuthResponse:
		if len(s.cfg.Credentials) == 0 {
			return fail(errProtocol("Authentication is not enabled on this server"))
		}
		return c.login(m.Token)
	}
	if len(s.cfg.Credentials) > 0 && !c.authenticated.Load() {
		return &message.Unauthorized{ErrorMessage: "You have not logged in"}
	}
	switch m := req.(type) {
	case *message.Register:
		for _, t := range m.EventTypes {
			if t == primitive.EventTypeSchemaChange {
				c.wantsSchemaEvents.Store(true)
			}
		}
		return &message.Ready{}
	}
	if s.unavailable.Load() {
		return fail(errUnavailable)
	}
	if d := time.Duration(s.latency.Load()); d > 0 {
		select {
		case <-time.After(d):
		case <-c.closing:
		}
	}
	switch m := req.(type) {
	case *message.Query:
		opts := queryOptions(m.Options, false)
		*consistency = opts.consistency
		comp, err := s.db.compile(sess, m.Query)
		if err != nil {
			return fail(err)
		}
		return c.runFaulted(sess, comp, opts)
	case *message.Prepare:
		if m.Keyspace != "" {
			sess.keyspace = m.Keyspace
		}
		comp, err := s.db.prepare(sess, m.Query)
		if err != nil {
			return fail(err)
		}
		return preparedResult(comp)
	case *message.Execute:
		opts := queryOptions(m.Options, true)
		*consistency = opts.consistency
		comp, err := s.db.preparedByID(m.QueryId)
		if err != nil {
			return fail(err)
		}
		sess.keyspace = comp.keyspace
		return c.runFaulted(sess, comp, opts)
	case *message.Batch:
		*consistency = m.Consistency
		fault := NoFault
		if s.fault.Load() != nil { // the batch's statements are looked up only for a hook
			fault = s.faultFor(s.db.batchQueries(m)...)
		}
		if fault == FailBefore {
			return fail(errUnavailable)
		}
		resp, err := s.db.executeBatch(sess, m)
		if err != nil {
			return fail(err)
		}
		if fault == TimeoutAfter {
			return &message.WriteTimeout{ErrorMessage: errTimeoutMessage, Consistency: m.Consistency, BlockFor: 1, WriteType: primitive.WriteTypeBatch}
		}
		return resp
	}
	return fail(errProtocol("Unexpected message %s", req.GetOpCode()))
}

// runFaulted runs comp as the hook of SetFault says (as run does without
// one).
func (c *conn) runFaulted(sess *session, comp *compiled, opts *options) message.Message {
	switch c.srv.faultFor(comp.query) {
	case FailBefore:
		return toMessage(errUnavailable, opts.consistency)
	case TimeoutAfter:
		resp := c.run(sess, comp, opts)
		if _, failed := resp.(message.Error); failed {
			return resp
		}
		mp, write := comp.plan.(*modPlan)
		if !write {
			return &message.ReadTimeout{ErrorMessage: errTimeoutMessage, Consistency: opts.consistency, BlockFor: 1}
		}
		wt := primitive.WriteTypeSimple
		if mp.conditional() {
			wt = primitive.WriteTypeCas
		}
		return &message.WriteTimeout{ErrorMessage: errTimeoutMessage, Consistency: opts.consistency, BlockFor: 1, WriteType: wt}
	}
	return c.run(sess, comp, opts)
}

func (c *conn) run(sess *session, comp *compiled, opts *options) message.Message {
	resp, err := c.srv.db.run(sess, comp, opts)
	if err != nil {
		return toMessage(err, opts.consistency)
	}
	if ks, ok := resp.(*message.SetKeyspaceResult); ok {
		c.ksMu.Lock()
		c.keyspace = ks.Keyspace
		c.ksMu.Unlock()
	}
	return resp
}

func queryOptions(o *message.QueryOptions, execute bool) *options {
	if o == nil {
		return &options{consistency: primitive.ConsistencyLevelOne}
	}
	return &options{
		values:       o.PositionalValues,
		named:        o.NamedValues,
		pageSize:     o.PageSize,
		pagingState:  o.PagingState,
		timestamp:    o.DefaultTimestamp,
		consistency:  o.Consistency,
		skipMetadata: execute && o.SkipMetadata,
	}
}

// preparedResult describes a prepared statement to the client.
func preparedResult(c *compiled) message.Message {
	vars := &message.VariablesMetadata{PkIndices: c.pkIndices}
	for i, r := range c.specs {
		vars.Columns = append(vars.Columns, &message.ColumnMetadata{Keyspace: r.keyspace, Table: r.table, Name: r.name, Index: int32(i), Type: r.typ.dataType()})
	}
	res := &message.RowsMetadata{ColumnCount: int32(len(c.result)), Columns: c.result}
	return &message.PreparedResult{PreparedQueryId: c.id[:], VariablesMetadata: vars, ResultMetadata: res}
}

// batchQueries returns the CQL text of a batch's statements (those it
// can find: executeBatch reports the others).
func (d *db) batchQueries(m *message.Batch) []string {
	out := make([]string, 0, len(m.Children))
	for _, ch := range m.Children {
		if ch.Id == nil {
			out = append(out, ch.Query)
		} else if comp, err := d.preparedByID(ch.Id); err == nil {
			out = append(out, comp.query)
		}
	}
	return out
}

// executeBatch runs a BATCH message: every child is compiled (from its
// query text or prepared ID), bound to its own values, and all of them are
// applied atomically.
func (d *db) executeBatch(sess *session, m *message.Batch) (message.Message, error) {
	opts := &options{consistency: m.Consistency, timestamp: m.DefaultTimestamp}
	children := make([]batchChild, 0, len(m.Children))
	plans := make([]*modPlan, 0, len(m.Children))
	var first *execCtx
	for _, ch := range m.Children {
		var comp *compiled
		var err error
		if ch.Id != nil {
			comp, err = d.preparedByID(ch.Id)
		} else {
			comp, err = d.compile(sess, ch.Query)
		}
		if err != nil {
			return nil, err
		}
		mp, ok := comp.plan.(*modPlan)
		if !ok {
			return nil, errInvalid("Invalid statement in batch: only UPDATE, INSERT and DELETE statements are allowed.")
		}
		if len(ch.Values) != len(comp.markers) {
			return nil, errInvalid("There were %d markers(?) in CQL but %d bound variables", len(comp.markers), len(ch.Values))
		}
		x := newExecCtx(d, sess, opts, comp, ch.Values)
		if first == nil {
			first = x
		}
		children = append(children, batchChild{plan: mp, x: x})
		plans = append(plans, mp)
	}
	if first == nil {
		return &message.VoidResult{}, nil
	}
	if err := checkBatchKind(batchKind(m.Type), plans); err != nil {
		return nil, err
	}
	if err := checkBatchSize(m, children); err != nil {
		return nil, err
	}
	return d.runBatch(first, children, nil)
}

// batchSizeFailBytes is Cassandra's batch_size_fail_threshold (50 KiB by
// default): a batch of more than one partition whose data is larger is
// refused; one of a single partition never is (CASSANDRA-10876).
const batchSizeFailBytes = 50 << 10

// checkBatchSize refuses, as Cassandra does, a batch spanning several
// partitions (of any of its tables: Cassandra counts a mutation per
// keyspace and partition key) whose bound values pass
// batchSizeFailBytes. Cassandra measures the mutations' data, which the
// values are the bulk of.
func checkBatchSize(m *message.Batch, children []batchChild) error {
	size := 0
	for _, ch := range m.Children {
		for _, v := range ch.Values {
			if v != nil {
				size += len(v.Contents)
			}
		}
	}
	if size <= batchSizeFailBytes {
		return nil
	}
	keys := map[string]bool{}
	for _, ch := range children {
		targets, err := ch.plan.targets(ch.x, nil)
		if err != nil {
			return err
		}
		for _, t := range targets {
			keys[t.table.keyspace+"\x00"+string(t.key)] = true
		}
	}
	if len(keys) > 1 {
		return errInvalid("Batch too large")
	}
	return nil
}
