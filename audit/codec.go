package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The canonical line is exactly what encoding/json produces for an Entry:
//
//	{"seq":N,"time":"T","kind":K[,"actor":A][,"data":{...}],"prev":"H"}
//
// Writing and reading it by hand rather than through reflection makes
// verification several times faster; codec_test.go checks that the two
// encodings agree.

// prevSuffixLen is the length of the fixed end of every line:
// `,"prev":"` + 64 hex digits + `"}`.
const prevSuffixLen = len(`,"prev":""}`) + 64

// appendEntry appends the canonical encoding of e to b. e.Data must already
// be canonical (compact, HTML-escaped JSON, as json.Marshal makes it).
func appendEntry(b []byte, e *Entry) ([]byte, error) {
	b, err := appendHeader(b, e)
	if err != nil {
		return b, err
	}
	if len(e.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, e.Data...)
	}
	b = append(b, `,"prev":`...)
	if validHash(e.Prev) {
		b = append(b, '"')
		b = append(b, e.Prev...)
		b = append(b, '"')
	} else {
		b = appendString(b, e.Prev)
	}
	return append(b, '}'), nil
}

// appendHeader appends the fields of e before its data: seq, time, kind
// and actor.
func appendHeader(b []byte, e *Entry) ([]byte, error) {
	if y := e.Time.Year(); y < 0 || y > 9999 {
		return b, fmt.Errorf("time %v: year outside [0,9999]", e.Time)
	}
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = append(b, `,"time":"`...)
	b = e.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","kind":`...)
	b = appendString(b, e.Kind)
	if e.Actor != "" {
		b = append(b, `,"actor":`...)
		b = appendString(b, e.Actor)
	}
	return b, nil
}

// appendString appends s as a JSON string the way encoding/json does. Plain
// printable ASCII is copied; anything that encoding/json would escape goes
// through encoding/json itself, so the two cannot disagree.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			enc, err := json.Marshal(s)
			if err != nil { // a string always encodes; keep the line invalid if not
				return append(b, '?')
			}
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// parser decodes canonical lines, reusing its buffers from line to line.
type parser struct {
	canon []byte
	data  dataChecker
}

// parse decodes one line without its newline and checks that it is the
// canonical encoding of a well-formed entry. Requiring the canonical form
// means every JSON parser reads the same entry from the same bytes: no
// duplicate keys, unknown fields, odd spacing, escapes or non-UTC times can
// hide in a line. The returned Data aliases line. On error, the returned
// entry has whatever seq could be read, for the error message.
func (p *parser) parse(line []byte) (Entry, error) {
	var e Entry
	if len(line) > MaxLineSize {
		return e, fmt.Errorf("line of %d bytes is longer than %d", len(line), MaxLineSize)
	}
	c := cursor{b: line}
	if !c.lit(`{"seq":`) {
		return e, errors.New(`does not start with {"seq"`)
	}
	e.Seq = c.uint()
	if e.Seq == 0 {
		return e, errors.New("seq missing or zero")
	}
	if !c.lit(`,"time":"`) {
		return e, errors.New("time missing")
	}
	ts := c.until('"')
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return e, fmt.Errorf("bad time: %v", err)
	}
	if t.Location() != time.UTC {
		return e, errors.New("time is not in UTC")
	}
	e.Time = t
	if !c.lit(`","kind":`) {
		return e, errors.New("kind missing")
	}
	// The last prevSuffixLen bytes are prev; everything else lies before.
	end := len(line) - prevSuffixLen
	if end < c.i || !bytes.HasPrefix(line[end:], []byte(`,"prev":"`)) || line[len(line)-2] != '"' || line[len(line)-1] != '}' {
		return e, errors.New(`does not end with ,"prev":"<sha-256>"}`)
	}
	e.Prev = string(line[end+len(`,"prev":"`) : len(line)-2])
	if !validHash(e.Prev) {
		return e, errors.New("prev is not a hex SHA-256")
	}
	c.b = line[:end]
	if e.Kind, err = c.str(); err != nil || e.Kind == "" {
		return e, errors.New("kind is not a non-empty string")
	}
	if c.lit(`,"actor":`) {
		if e.Actor, err = c.str(); err != nil {
			return e, fmt.Errorf("actor: %v", err)
		}
	}
	// Data and prev are checked as they are: only the fields before data
	// can be written other than the canonical way and still parse.
	header := line[:c.i]
	if c.lit(`,"data":`) {
		e.Data = line[c.i:end]
		if err := p.data.check(e.Data); err != nil {
			return e, err
		}
	} else if c.i != end {
		return e, fmt.Errorf("unexpected bytes at offset %d", c.i)
	}
	p.canon, err = appendHeader(p.canon[:0], &e)
	if err != nil {
		return e, err
	}
	if !bytes.Equal(p.canon, header) {
		return e, errors.New("not in canonical form")
	}
	return e, nil
}

// parseLine is parse for a single line; the entry owns its Data.
func parseLine(line []byte) (Entry, error) {
	var p parser
	e, err := p.parse(line)
	if err == nil && e.Data != nil {
		e.Data = bytes.Clone(e.Data)
	}
	return e, err
}

// cursor reads a line left to right.
type cursor struct {
	b []byte
	i int
}

func (c *cursor) lit(s string) bool {
	if !bytes.HasPrefix(c.b[c.i:], []byte(s)) {
		return false
	}
	c.i += len(s)
	return true
}

// uint reads decimal digits; 0 when there are none or they overflow.
func (c *cursor) uint() uint64 {
	start := c.i
	for c.i < len(c.b) && c.b[c.i] >= '0' && c.b[c.i] <= '9' {
		c.i++
	}
	n, err := strconv.ParseUint(string(c.b[start:c.i]), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// until returns the bytes up to (not including) the next sep, and leaves the
// cursor on sep.
func (c *cursor) until(sep byte) []byte {
	start := c.i
	if j := bytes.IndexByte(c.b[c.i:], sep); j >= 0 {
		c.i += j
	} else {
		c.i = len(c.b)
	}
	return c.b[start:c.i]
}

// str reads a JSON string token.
func (c *cursor) str() (string, error) {
	if c.i >= len(c.b) || c.b[c.i] != '"' {
		return "", errors.New("not a string")
	}
	escaped := false
	for j := c.i + 1; j < len(c.b); j++ {
		switch c.b[j] {
		case '\\':
			escaped = true
			j++ // skip the escaped byte
		case '"':
			tok := c.b[c.i : j+1]
			c.i = j + 1
			if !escaped {
				return string(tok[1 : len(tok)-1]), nil
			}
			var s string
			if err := json.Unmarshal(tok, &s); err != nil {
				return "", err
			}
			return s, nil
		}
	}
	return "", errors.New("unterminated string")
}
