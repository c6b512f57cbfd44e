package audit

import "errors"

// Reading an entry's data is most of what verifying a log costs, so it is
// checked in one pass over its bytes: that it is JSON (exactly what
// json.Valid accepts) and that it is in the form json.Marshal gives it. The
// errors are those of checking validity first and form after: a line that
// is both invalid and in the wrong form is reported as invalid.

var (
	errDataNotObject = errors.New("data is not a JSON object")
	errDataInvalid   = errors.New("data is not valid JSON")
	errDataHTML      = errors.New("data has unescaped HTML characters")
	errDataLineSep   = errors.New("data has unescaped U+2028 or U+2029")
	errDataSpace     = errors.New("data is not compact")
)

// maxDataDepth is how deeply encoding/json lets arrays and objects nest;
// data nested deeper is not valid JSON to json.Valid.
const maxDataDepth = 10000

// dataChecker checks data; it keeps its nesting stack from one call to the
// next.
type dataChecker struct {
	inObject []bool // per open array or object: whether it is an object
}

// check checks that data is one JSON object in the form json.Marshal gives
// it: compact, with <, >, &, U+2028 and U+2029 escaped.
func (d *dataChecker) check(data []byte) error {
	if len(data) == 0 || data[0] != '{' {
		return errDataNotObject
	}
	form, ok := d.scan(data)
	if !ok {
		return errDataInvalid
	}
	return form
}

// What scan expects next.
const (
	wantValue = iota
	wantKey
	wantAfterValue // a comma, the end of the enclosing array or object, or the end of data
)

// scan reports whether b is valid JSON and, if so, the first place (the
// error for it) where it is not in json.Marshal's form.
func (d *dataChecker) scan(b []byte) (form error, valid bool) {
	stack := d.inObject[:0]
	defer func() { d.inObject = stack[:0] }()
	i, want := 0, wantValue
	for {
		// White space may come between any two tokens; json.Marshal
		// writes none.
		if i < len(b) && isSpace(b[i]) {
			if form == nil {
				form = errDataSpace
			}
			for i < len(b) && isSpace(b[i]) {
				i++
			}
		}
		if i == len(b) {
			return form, want == wantAfterValue && len(stack) == 0
		}
		c := b[i]
		switch want {
		case wantKey:
			if c != '"' {
				return form, false
			}
			var ok bool
			if i, ok = scanString(b, i, &form); !ok {
				return form, false
			}
			for i < len(b) && isSpace(b[i]) {
				if form == nil {
					form = errDataSpace
				}
				i++
			}
			if i == len(b) || b[i] != ':' {
				return form, false
			}
			i++
			want = wantValue
		case wantAfterValue:
			if len(stack) == 0 {
				return form, false // more than one value
			}
			obj := stack[len(stack)-1]
			switch {
			case c == ',':
				i++
				want = wantValue
				if obj {
					want = wantKey
				}
			case c == '}' && obj, c == ']' && !obj:
				i++
				stack = stack[:len(stack)-1]
			default:
				return form, false
			}
		case wantValue:
			var ok bool
			switch {
			case c == '{' || c == '[':
				if len(stack) == maxDataDepth {
					return form, false
				}
				stack = append(stack, c == '{')
				i++
				// An empty array or object ends at once.
				j := i
				for j < len(b) && isSpace(b[j]) {
					j++
				}
				if j < len(b) && (c == '{' && b[j] == '}' || c == '[' && b[j] == ']') {
					if j > i && form == nil {
						form = errDataSpace
					}
					i = j + 1
					stack = stack[:len(stack)-1]
					want = wantAfterValue
					continue
				}
				if c == '{' {
					want = wantKey
				}
				continue
			case c == '"':
				i, ok = scanString(b, i, &form)
			case c == '-' || c >= '0' && c <= '9':
				i, ok = scanNumber(b, i)
			case c == 't':
				i, ok = scanLiteral(b, i, "true")
			case c == 'f':
				i, ok = scanLiteral(b, i, "false")
			case c == 'n':
				i, ok = scanLiteral(b, i, "null")
			}
			if !ok {
				return form, false
			}
			want = wantAfterValue
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// stringSpecial marks the bytes scanString stops at: the end of the
// string, an escape, control characters (invalid in a string), the
// characters json.Marshal escapes for HTML, and the first byte of U+2028
// and U+2029.
var stringSpecial = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	for _, c := range []byte{'"', '\\', '<', '>', '&', 0xe2} {
		t[c] = true
	}
	return t
}()

// scanString reads the string that starts at b[i] (a quote) and returns
// the index after it. Bytes that are not valid UTF-8 are accepted, as
// json.Valid accepts them. It sets *form, if not yet set, for a character
// json.Marshal would have escaped.
func scanString(b []byte, i int, form *error) (int, bool) {
	i++
	for {
		for i < len(b) && !stringSpecial[b[i]] {
			i++
		}
		if i == len(b) {
			return i, false
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, true
		case c == '\\':
			if i+1 == len(b) {
				return i, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return i, false
				}
				i += 6
			default:
				return i, false
			}
		case c < 0x20:
			return i, false
		case c == 0xe2:
			if i+2 < len(b) && b[i+1] == 0x80 && (b[i+2] == 0xa8 || b[i+2] == 0xa9) && *form == nil {
				*form = errDataLineSep
			}
			i++
		default: // <, > or &
			if *form == nil {
				*form = errDataHTML
			}
			i++
		}
	}
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// scanNumber reads the number that starts at b[i]: an optional minus, 0 or
// digits not starting with 0, optional fraction, optional exponent.
func scanNumber(b []byte, i int) (int, bool) {
	if b[i] == '-' {
		i++
	}
	switch {
	case i == len(b) || !isDigit(b[i]):
		return i, false
	case b[i] == '0':
		i++
	default:
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i == len(b) || !isDigit(b[i]) {
			return i, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i == len(b) || !isDigit(b[i]) {
			return i, false
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i, true
}

func scanLiteral(b []byte, i int, lit string) (int, bool) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}
