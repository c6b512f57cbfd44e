package approvals

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// The cluster RPC: on a connection of kind connRPC, each call is one
// request frame and one response frame, each a 4-byte big-endian length
// and a JSON document; a connection carries calls one after another.
// Snapshots travel as a stream of chunks after the frames (see
// writeChunks).

// Methods.
const (
	rpcHello           = "hello"            // who are you, and are you in a cluster
	rpcApply           = "apply"            // apply these command bytes (to the leader)
	rpcIssue           = "issue"            // issue this approved request's certificate (to the leader)
	rpcStatus          = "status"           // this node's raft status
	rpcAddVoter        = "add-voter"        // add node ID at address (to the leader)
	rpcRemoveServer    = "remove-server"    // remove node ID (to the leader)
	rpcRestoreOnLeader = "restore"          // restore this snapshot (to the leader)
	rpcAuditLines      = "audit-lines"      // audit lines from seq to seq
	rpcMembers         = "members"          // operator: the cluster's members
	rpcJoin            = "join"             // operator, joining node: add the node at an address
	rpcRemove          = "remove"           // operator: remove node ID
	rpcSnapshotSave    = "snapshot-save"    // operator: stream a snapshot of the state
	rpcSnapshotRestore = "snapshot-restore" // operator: replace the state with a snapshot
)

type rpcRequest struct {
	Method string          `json:"method"`
	Body   json.RawMessage `json:"body,omitempty"`
}

type rpcResponse struct {
	Err  *wireError      `json:"err,omitempty"`
	Body json.RawMessage `json:"body,omitempty"`
}

// maxFrame bounds one frame; the largest are audit line batches
// (maxLinesReply) and commands with a long signature.
const maxFrame = 16 << 20

// rpcTimeout bounds one call that names no deadline of its own.
const rpcTimeout = 10 * time.Second

func writeFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if len(b) > maxFrame {
		return fmt.Errorf("rpc frame of %d bytes; at most %d", len(b), maxFrame)
	}
	buf := make([]byte, 4, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	_, err = w.Write(append(buf, b...))
	return err
}

func readFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return fmt.Errorf("rpc frame of %d bytes; at most %d", n, maxFrame)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

const chunkSize = 64 << 10

// chunkWriter writes a stream as length-prefixed chunks; end writes the
// empty chunk that ends it, so the reader can tell a whole stream from a
// cut one.
type chunkWriter struct{ w io.Writer }

func (c chunkWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), chunkSize)
		var hdr [4]byte
		binary.BigEndian.PutUint32(hdr[:], uint32(k))
		if _, err := c.w.Write(hdr[:]); err != nil {
			return n, err
		}
		if _, err := c.w.Write(p[:k]); err != nil {
			return n, err
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

func (c chunkWriter) end() error {
	_, err := c.w.Write([]byte{0, 0, 0, 0})
	return err
}

// chunkReader reads what writeChunks wrote; a stream cut before its end
// reads as io.ErrUnexpectedEOF.
type chunkReader struct {
	r    io.Reader
	left uint32
	done bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	for c.left == 0 {
		if c.done {
			return 0, io.EOF
		}
		var hdr [4]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return 0, io.ErrUnexpectedEOF
		}
		c.left = binary.BigEndian.Uint32(hdr[:])
		if c.left > chunkSize {
			return 0, fmt.Errorf("snapshot chunk of %d bytes; at most %d", c.left, chunkSize)
		}
		if c.left == 0 {
			c.done = true
		}
	}
	if uint32(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= uint32(n)
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// transportError: the call did not get an answer (dial, TLS, I/O). Its
// outcome is unknown; idempotent calls are retried.
type transportError struct {
	addr string
	err  error
}

func (e *transportError) Error() string { return fmt.Sprintf("node %s: %v", e.addr, e.err) }
func (e *transportError) Unwrap() error { return e.err }

// rpcClient makes cluster calls, keeping idle connections per address.
type rpcClient struct {
	dial dialFunc
	tls  *ClusterTLS

	mu     sync.Mutex
	idle   map[string][]*rpcConn
	closed bool
}

type rpcConn struct {
	net.Conn
	r *bufio.Reader
}

// maxIdlePerAddr bounds the idle connections kept to one node.
const maxIdlePerAddr = 8

func newRPCClient(dial dialFunc, t *ClusterTLS) *rpcClient {
	if dial == nil {
		dial = dialTCP
	}
	return &rpcClient{dial: dial, tls: t, idle: map[string][]*rpcConn{}}
}

func (c *rpcClient) get(ctx context.Context, addr string) (*rpcConn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	if l := c.idle[addr]; len(l) > 0 {
		conn := l[len(l)-1]
		c.idle[addr] = l[:len(l)-1]
		c.mu.Unlock()
		return conn, nil
	}
	c.mu.Unlock()
	conn, err := dialNode(ctx, c.dial, c.tls, addr, connRPC)
	if err != nil {
		return nil, &transportError{addr, err}
	}
	return &rpcConn{Conn: conn, r: bufio.NewReader(conn)}, nil
}

func (c *rpcClient) put(addr string, conn *rpcConn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || len(c.idle[addr]) >= maxIdlePerAddr {
		conn.Close()
		return
	}
	c.idle[addr] = append(c.idle[addr], conn)
}

// drop closes the idle connections to addr, after one of them failed.
func (c *rpcClient) drop(addr string) {
	c.mu.Lock()
	l := c.idle[addr]
	delete(c.idle, addr)
	c.mu.Unlock()
	for _, conn := range l {
		conn.Close()
	}
}

func (c *rpcClient) close() {
	c.mu.Lock()
	c.closed = true
	all := c.idle
	c.idle = nil
	c.mu.Unlock()
	for _, l := range all {
		for _, conn := range l {
			conn.Close()
		}
	}
}

// call makes one call: in is the request body, out receives the response
// body. A refusal by the node comes back as the error it was, so
// errors.Is works across nodes.
func (c *rpcClient) call(ctx context.Context, addr, method string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rpcTimeout)
		defer cancel()
	}
	conn, err := c.get(ctx, addr)
	if err != nil {
		return err
	}
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	// A call cut short by ctx closes its connection: what is in flight on
	// it can no longer be told from the next call's answer.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	var resp rpcResponse
	err = writeFrame(conn, rpcRequest{Method: method, Body: body})
	if err == nil {
		err = readFrame(conn.r, &resp)
	}
	if !stop() || err != nil {
		conn.Close()
		c.drop(addr)
		if err == nil || ctx.Err() != nil {
			err = errors.Join(ctx.Err(), err)
		}
		return &transportError{addr, err}
	}
	_ = conn.SetDeadline(time.Time{})
	c.put(addr, conn)
	if resp.Err != nil {
		return resp.Err.decode()
	}
	if out != nil && len(resp.Body) > 0 {
		return json.Unmarshal(resp.Body, out)
	}
	return nil
}

// stream makes a call that sends upload and/or receives download as
// chunks after the frames, on a connection of its own.
func (c *rpcClient) stream(ctx context.Context, addr, method string, in any, upload io.Reader, download io.Writer, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	conn, err := dialNode(ctx, c.dial, c.tls, addr, connRPC)
	if err != nil {
		return &transportError{addr, err}
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	br := bufio.NewReader(conn)
	bw := bufio.NewWriter(conn)
	if err := writeFrame(bw, rpcRequest{Method: method, Body: body}); err != nil {
		return &transportError{addr, err}
	}
	if upload != nil {
		cw := chunkWriter{bw}
		if _, err := io.Copy(cw, upload); err != nil {
			return fmt.Errorf("send to node %s: %w", addr, err)
		}
		if err := cw.end(); err != nil {
			return &transportError{addr, err}
		}
	}
	if err := bw.Flush(); err != nil {
		return &transportError{addr, err}
	}
	var resp rpcResponse
	if err := readFrame(br, &resp); err != nil {
		return &transportError{addr, errors.Join(ctx.Err(), err)}
	}
	if resp.Err != nil {
		return resp.Err.decode()
	}
	if download != nil {
		if _, err := io.Copy(download, &chunkReader{r: br}); err != nil {
			return fmt.Errorf("receive from node %s: %w", addr, errors.Join(ctx.Err(), err))
		}
		var trailer rpcResponse
		if err := readFrame(br, &trailer); err != nil {
			return &transportError{addr, err}
		}
		if trailer.Err != nil {
			return trailer.Err.decode()
		}
		resp.Body = trailer.Body
	}
	if out != nil && len(resp.Body) > 0 {
		return json.Unmarshal(resp.Body, out)
	}
	return nil
}
