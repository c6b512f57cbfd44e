package approvals

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Request IDs are "req-" followed by a ULID: 48 bits of Unix milliseconds
// then 80 random bits, written as 26 characters of Crockford's base32. They
// sort by creation time, as strings and in the state store's indexes, which
// is what lets a listing run newest first without sorting.
const (
	idPrefix  = "req-"
	idLen     = len(idPrefix) + 26
	crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	maxULIDms = 1<<48 - 1
)

// idSource hands out request IDs. Within one millisecond it increments the
// random part instead of drawing a new one, so that IDs from one process
// are strictly increasing even when the clock stands still or steps back.
type idSource struct {
	mu     sync.Mutex
	rand   io.Reader
	lastMS uint64
	hi     uint16 // top 16 of the 80 random bits
	lo     uint64 // low 64
}

func newIDSource() *idSource { return &idSource{rand: rand.Reader} }

func (g *idSource) next(now time.Time) (string, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ms := uint64(max(now.UnixMilli(), 0))
	if ms > maxULIDms {
		return "", fmt.Errorf("new request ID: clock reads %v, past the year 10889", now)
	}
	if ms <= g.lastMS && g.lastMS != 0 {
		ms = g.lastMS
		g.lo++
		if g.lo == 0 {
			g.hi++
			if g.hi == 0 { // 2^80 IDs in one millisecond: move to the next
				ms++
			}
		}
	} else {
		var b [10]byte
		if _, err := io.ReadFull(g.rand, b[:]); err != nil {
			return "", fmt.Errorf("new request ID: %w", err)
		}
		g.hi = binary.BigEndian.Uint16(b[:2])
		g.lo = binary.BigEndian.Uint64(b[2:])
	}
	g.lastMS = ms
	return idPrefix + encodeULID(ms, g.hi, g.lo), nil
}

// seed makes the source continue after the newest ID in st, so that IDs
// keep increasing across restarts even when the clock has stepped back.
func (g *idSource) seed(st *stateStore) error {
	obj, err := st.db.Txn(false).Last(tableRequests, indexID)
	if err != nil {
		return fmt.Errorf("seed request IDs: %w", err)
	}
	// The newest request may have been pruned since.
	pruned, err := st.pruned()
	if err != nil {
		return fmt.Errorf("seed request IDs: %w", err)
	}
	id := pruned.LastID
	if obj != nil && obj.(*Request).ID > id {
		id = obj.(*Request).ID
	}
	if id == "" {
		return nil
	}
	ms, hi, lo, ok := decodeULID(strings.TrimPrefix(id, idPrefix))
	if !ok {
		return fmt.Errorf("seed request IDs: newest ID %q is malformed", id)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lastMS, g.hi, g.lo = ms, hi, lo
	return nil
}

// encodeULID writes the 128-bit value ms<<80 | hi<<64 | lo as 26 base32
// digits, most significant first; the first digit holds only 3 bits.
func encodeULID(ms uint64, hi uint16, lo uint64) string {
	top := ms<<16 | uint64(hi) // the high 64 bits of the 128
	var out [26]byte
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | top<<59
		top >>= 5
	}
	return string(out[:])
}

// validID reports whether id has the shape of a request ID. It keeps
// garbage out of lookups and error messages.
func validID(id string) bool {
	if len(id) != idLen || !strings.HasPrefix(id, idPrefix) {
		return false
	}
	for i := len(idPrefix); i < len(id); i++ {
		if strings.IndexByte(crockford, id[i]) < 0 {
			return false
		}
	}
	return id[len(idPrefix)] <= '7'
}

// decodeULID reverses encodeULID.
func decodeULID(s string) (ms uint64, hi uint16, lo uint64, ok bool) {
	if len(s) != 26 || s[0] > '7' {
		return 0, 0, 0, false
	}
	var top uint64
	for i := 0; i < len(s); i++ {
		d := strings.IndexByte(crockford, s[i])
		if d < 0 {
			return 0, 0, 0, false
		}
		top = top<<5 | lo>>59
		lo = lo<<5 | uint64(d)
	}
	return top >> 16, uint16(top), lo, true
}
