package audit

import (
	"encoding/json"
	"strconv"
)

// dataFields returns the "serial" and "repo" members of an entry's data
// object: the serial when it is an integer that fits a uint64, the repo when
// it is a string. Keys match exactly; when a key repeats, the last one counts,
// as with encoding/json. Data that is not a JSON object yields nothing.
//
// It reads the top level only, skipping nested values, because decoding
// every entry's data with encoding/json made indexing twice as slow.
func dataFields(data []byte) (serial uint64, hasSerial bool, repo string) {
	s := jsonScan{b: data}
	if !s.lit('{') {
		return 0, false, ""
	}
	if s.lit('}') {
		return 0, false, ""
	}
	for {
		key, ok := s.str()
		if !ok || !s.lit(':') {
			return 0, false, ""
		}
		s.space()
		start := s.i
		if !s.skipValue() {
			return 0, false, ""
		}
		val := data[start:s.i]
		switch key {
		case "serial":
			serial, hasSerial = 0, false
			if n, err := strconv.ParseUint(string(val), 10, 64); err == nil {
				serial, hasSerial = n, true
			}
		case "repo":
			repo = ""
			if val[0] == '"' {
				var v string
				if json.Unmarshal(val, &v) == nil {
					repo = v
				}
			}
		}
		if s.lit(',') {
			continue
		}
		if s.lit('}') {
			return serial, hasSerial, repo
		}
		return 0, false, ""
	}
}

// jsonScan walks JSON text without decoding it.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// lit consumes c, after any white space.
func (s *jsonScan) lit(c byte) bool {
	s.space()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str consumes a string and returns its value.
func (s *jsonScan) str() (string, bool) {
	s.space()
	start := s.i
	if !s.skipString() {
		return "", false
	}
	tok := s.b[start:s.i]
	for _, c := range tok {
		if c == '\\' {
			var v string
			if json.Unmarshal(tok, &v) != nil {
				return "", false
			}
			return v, true
		}
	}
	return string(tok[1 : len(tok)-1]), true
}

func (s *jsonScan) skipString() bool {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false
	}
	for j := s.i + 1; j < len(s.b); j++ {
		switch s.b[j] {
		case '\\':
			j++
		case '"':
			s.i = j + 1
			return true
		}
	}
	return false
}

// skipValue consumes one value of any kind.
func (s *jsonScan) skipValue() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		return s.skipString()
	case '{', '[':
		depth := 0
		for s.i < len(s.b) {
			switch s.b[s.i] {
			case '"':
				if !s.skipString() {
					return false
				}
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					s.i++
					return true
				}
			}
			s.i++
		}
		return false
	default: // number, true, false, null
		start := s.i
		for s.i < len(s.b) {
			switch c := s.b[s.i]; {
			case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c == '-', c == '+', c == '.', c == 'E':
				s.i++
				continue
			}
			break
		}
		return s.i > start
	}
}
