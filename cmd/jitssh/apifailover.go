package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"golang.org/x/crypto/ssh"
)

// A client given the addresses of a cluster's nodes uses one connection,
// to the first node that answers, for as long as it works: a write is
// read back from the node that took it, which has applied it. It moves to
// the next node (in the order given, passing over those that already
// failed it) when:
//
//   - a node cannot be reached or fails the handshake;
//   - the connection is gone before a call reaches the daemon (the
//     session or the exec request fails, so the daemon never read the
//     call's body): any call is then asked of the next node;
//   - the connection breaks during a call that changes nothing (a read), or
//     during a wait or watch, which then resumes on the next node from the
//     newest version it had seen;
//   - a node refuses a call with one of failoverCodes, which say that
//     nothing was changed and that another node may do it.
//
// Any other refusal is the cluster's answer, which every node would give,
// and is returned as it is. A connection that breaks during a write is not
// retried elsewhere: the change may have been made, and making it twice is
// not harmless for every write. The error says so.

// failoverCodes are the refusals by which a node says it cannot serve
// this call at all (it runs another policy than the cluster's, or cannot
// reach the cluster's leader as one of its nodes) and that nothing was
// changed. no_leader is not one of them: the change may have been made,
// and every node of a cluster without a leader would say the same.
var failoverCodes = map[string]bool{
	codeNotNode:       true,
	codePolicyChanged: true,
}

// rereadable are the methods that change nothing, and so may be asked
// again of another node when the connection breaks mid-call.
var rereadable = map[string]bool{
	methodWhoami:  true,
	methodGet:     true,
	methodList:    true,
	methodAllowed: true,
	methodWait:    true,
	methodWatch:   true,
}

// resumes reports whether method is a waiting call, which follows changes
// until it is done and takes up where it was on another node.
func resumes(method string) bool { return method == methodWait || method == methodWatch }

// connLostError is a call whose connection broke, or whose daemon ended it
// without an answer, before it was done. unsent is true when the daemon
// cannot have read the call.
type connLostError struct {
	addr, method string
	unsent       bool
	err          error
}

func (e *connLostError) Error() string {
	msg := fmt.Sprintf("%s: lost the daemon at %s: %v", e.method, e.addr, e.err)
	if !e.unsent && !rereadable[e.method] {
		msg += "; the change may or may not have been made: look at the request before trying again"
	}
	return msg
}

func (e *connLostError) Unwrap() error { return e.err }

func (a *apiClient) callOnce(method string, req apiRequest) (*apiResponse, error) {
	var resp *apiResponse
	err := a.stream(context.Background(), method, req, func(r *apiResponse) (bool, error) {
		resp = r
		return false, nil
	})
	if err != nil {
		return resp, err
	}
	if resp == nil {
		return nil, fmt.Errorf("%s: the daemon closed the call without an answer", method)
	}
	return resp, nil
}

// stream runs a method and hands each response line to fn until fn says
// stop, the daemon ends the call, or ctx is done, moving to another node
// as the comment at the top of this file says. A waiting call resumed on
// another node asks only for what is newer than what fn was handed, and
// fn is never handed a version of a request older than one it already
// had.
func (a *apiClient) stream(ctx context.Context, method string, req apiRequest, fn func(*apiResponse) (more bool, err error)) error {
	waiting := resumes(method)
	seen := map[string]uint64{} // a waiting call's newest version of each request
	failed := map[string]bool{} // nodes that failed this call since it last got an answer
	for {
		conn, addr := a.current()
		answered := false
		stopped, err := a.streamOn(ctx, conn, addr, method, req, func(r *apiResponse) (bool, error) {
			answered = true
			if waiting && r.Request != nil {
				if v, ok := seen[r.Request.ID]; ok && r.Request.Version <= v {
					return true, nil
				}
				seen[r.Request.ID] = r.Request.Version
				req.After = max(req.After, r.Request.Version)
			}
			return fn(r)
		})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if stopped {
			return err
		}
		var lost *connLostError
		var refused *apiError
		switch {
		case err == nil && !waiting:
			return nil
		case err == nil:
			// A wait or watch ends only when it is done, which fn
			// says; its node is going away.
			err = &connLostError{addr: addr, method: method, err: errors.New("the daemon ended the call")}
		case errors.As(err, &lost):
			if !lost.unsent && !rereadable[method] {
				return err
			}
		case errors.As(err, &refused) && failoverCodes[refused.Code]:
		default:
			return err
		}
		if len(a.servers) == 1 {
			return err // no other node to ask
		}
		if answered {
			clear(failed)
		}
		failed[addr] = true
		if cerr := a.connect(failed); cerr != nil {
			if refused != nil {
				return err
			}
			return fmt.Errorf("%w; no other node answered: %v", err, cerr)
		}
	}
}

// streamOn runs method once on conn. stopped is true when fn said stop or
// failed, and err is then fn's error. A broken connection, or a call that
// ended without the daemon's exit status, is a *connLostError.
func (a *apiClient) streamOn(ctx context.Context, conn *ssh.Client, addr, method string, req apiRequest, fn func(*apiResponse) (bool, error)) (stopped bool, err error) {
	lost := func(err error) (bool, error) {
		return false, &connLostError{addr: addr, method: method, err: err}
	}
	unsent := func(err error) (bool, error) {
		return false, &connLostError{addr: addr, method: method, unsent: true, err: err}
	}
	body, err := json.Marshal(req)
	if err != nil {
		return false, err
	}
	sess, err := conn.NewSession()
	if err != nil {
		return unsent(fmt.Errorf("open session: %w", err))
	}
	defer sess.Close()
	sess.Stdin = bytes.NewReader(append(body, '\n'))
	out, err := sess.StdoutPipe()
	if err != nil {
		return false, err
	}
	// The body goes only once the daemon has taken the exec request: a
	// call whose exec failed was not read.
	if err := sess.Start(method); err != nil {
		return unsent(err)
	}
	stop := context.AfterFunc(ctx, func() { sess.Close() })
	defer stop()
	r := bufio.NewReaderSize(out, 64<<10)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 && (err == nil || errors.Is(err, io.EOF)) {
			resp, derr := decodeResponse(line)
			if derr != nil {
				return false, derr
			}
			more, ferr := fn(resp)
			if ferr != nil || !more {
				return true, ferr
			}
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if errors.Is(err, io.EOF) {
			// The daemon ends every call with its exit status; a call
			// that ends without one lost its daemon.
			var missing *ssh.ExitMissingError
			if werr := sess.Wait(); errors.As(werr, &missing) {
				return lost(errors.New("the connection closed"))
			}
			return false, nil
		}
		if err != nil {
			return lost(err)
		}
	}
}
