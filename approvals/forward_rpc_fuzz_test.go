package approvals

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"
)

// FuzzRPCFrame feeds arbitrary bytes to the cluster RPC's frame and chunk
// readers, as a peer past the TLS handshake could send them. They must
// never panic nor read more than a frame's bound, and what they accept must
// come out the same when written again. Seeds are in
// testdata/fuzz/FuzzRPCFrame.
func FuzzRPCFrame(f *testing.F) {
	var good bytes.Buffer
	if err := writeFrame(&good, rpcRequest{Method: rpcApply, Body: json.RawMessage(`{"data":"QUJD"}`)}); err != nil {
		f.Fatal(err)
	}
	cw := chunkWriter{&good}
	if _, err := cw.Write([]byte("snapshot bytes")); err != nil {
		f.Fatal(err)
	}
	if err := cw.end(); err != nil {
		f.Fatal(err)
	}
	f.Add(good.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 2, '{', '}', 0, 0, 0, 1, 'x'})

	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		var req rpcRequest
		if err := readFrame(r, &req); err != nil {
			return
		}
		var again bytes.Buffer
		if err := writeFrame(&again, req); err != nil {
			t.Fatalf("writing a frame read back: %v", err)
		}
		var req2 rpcRequest
		if err := readFrame(&again, &req2); err != nil {
			t.Fatalf("reading a frame written back: %v", err)
		}
		if req.Method != req2.Method || !sameJSON(req.Body, req2.Body) {
			t.Fatalf("frame changed on the way round: %+v, %+v", req, req2)
		}
		cr := &chunkReader{r: r}
		body, err := io.ReadAll(io.LimitReader(cr, 1<<20))
		if err != nil || !cr.done {
			return
		}
		var out bytes.Buffer
		cw := chunkWriter{&out}
		if _, err := cw.Write(body); err != nil {
			t.Fatal(err)
		}
		if err := cw.end(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(&chunkReader{r: &out})
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("stream changed on the way round: %v", err)
		}
	})
}

// sameJSON reports whether two documents hold the same value, however
// they are escaped.
func sameJSON(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// FuzzOpenEnvelope feeds arbitrary bytes to the decoder of a command's
// envelope, as a raft log entry could hold them: it must never panic, and
// must refuse, as a decode error, anything without a well-formed key.
func FuzzOpenEnvelope(f *testing.F) {
	data, err := encodeEnvelope(msgApprove|msgAudited, approveCmd{ID: idA}, "sha256:00", time.Unix(0, 0))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data[1:])
	f.Add([]byte(`{"op":"x","cmd":{}}`))
	f.Add([]byte(`{"op":"0123456789abcdef0123456789abcdef","cmd":null}`))

	f.Fuzz(func(t *testing.T, body []byte) {
		env, typ, cmd, err := openEnvelope(msgApprove|msgAudited|msgEnvelope, body)
		if err != nil {
			var de *decodeError
			if !errors.As(err, &de) {
				t.Fatalf("not a decode error: %v", err)
			}
			return
		}
		if len(env.Op) != 32 || typ != msgApprove|msgAudited || !bytes.Equal(cmd, env.Cmd) {
			t.Fatalf("accepted %q as key %q, type %v", body, env.Op, typ)
		}
	})
}
