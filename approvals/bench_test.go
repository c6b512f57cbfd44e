package approvals

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// unlimitedDevPolicy is the dev policy without per-person limits.
func unlimitedDevPolicy(tb testing.TB) *Policy {
	tb.Helper()
	p, err := NewPolicy(withoutLimits(devPolicy(tb).Config()))
	require.NoError(tb, err)
	return p
}

// benchService opens a Service on the real clock, without an audit log.
func benchService(b *testing.B) *Service {
	b.Helper()
	s, err := Open(Options{
		DataDir:      b.TempDir(),
		Policy:       unlimitedDevPolicy(b),
		Authority:    newCAKey(b),
		RaftTimeout:  testRaftTimeout,
		noBackground: true,
	})
	require.NoError(b, err)
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkSubmitAutoApprove issues certificates through the whole durable
// path: policy, submit, serial allocation, signature, certificate stored
// (three raft commands).
func BenchmarkSubmitAutoApprove(b *testing.B) {
	s := benchService(b)
	in := SubmitInput{Repo: "demo/app", Ref: "refs/heads/main", Access: "read", PublicKey: freshKey(b)}
	b.ReportAllocs()
	for b.Loop() {
		r, err := s.Submit(context.Background(), actorOf(s.Policy(), "alice"), in)
		if err != nil || r.Certificate == "" {
			b.Fatal(r, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}

// BenchmarkRaftApply is the cost of one durable write: a request stored
// through raft, fsync'd, and applied to the state store.
func BenchmarkRaftApply(b *testing.B) {
	s := benchService(b)
	req := mockRequest("")
	b.ReportAllocs()
	for b.Loop() {
		id, err := s.ids.next(time.Now())
		if err != nil {
			b.Fatal(err)
		}
		req.ID = id
		if _, err := s.apply(msgSubmit, submitCmd{Request: req}); err != nil {
			b.Fatal(err)
		}
	}
}

// counterSerials hands out serials from memory, durably nowhere.
type counterSerials struct{ n atomic.Uint64 }

func (c *counterSerials) NextSerial() (uint64, error) { return c.n.Add(1), nil }

// BenchmarkSignOnly is the CA's signature alone, for comparison with the
// two above.
func BenchmarkSignOnly(b *testing.B) {
	a := newCAKey(b)
	req := ca.CertRequest{
		PublicKey: freshKey(b),
		KeyID:     "alice/req-01ARZ3NDEKTSV4RRFFQ69G5FAV",
		Grants:    []principals.Grant{{Access: principals.Read, Repo: "demo/app", Ref: "refs/heads/main"}},
		TTL:       time.Hour,
	}
	var serials counterSerials
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Sign(req, &serials); err != nil {
			b.Fatal(err)
		}
	}
}
