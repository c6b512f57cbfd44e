package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// referenceCheckData is the definition dataChecker.check must meet:
// json.Valid first, then a scan for the bytes json.Marshal would not write.
func referenceCheckData(data []byte) error {
	if len(data) == 0 || data[0] != '{' {
		return errDataNotObject
	}
	if !json.Valid(data) {
		return errDataInvalid
	}
	inString := false
	for i := 0; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			inString = !inString
		case c == '\\':
			i++ // an escaped byte cannot end the string
		case c == '<' || c == '>' || c == '&':
			return errDataHTML
		case c == 0xe2:
			if i+2 < len(data) && data[i+1] == 0x80 && (data[i+2] == 0xa8 || data[i+2] == 0xa9) {
				return errDataLineSep
			}
		case !inString && isSpace(c):
			return errDataSpace
		}
	}
	return nil
}

// dataSeeds are data fields the checker must judge as the reference does:
// valid and invalid JSON of every kind of token, every form error, both
// kinds of error in one value, and nesting at encoding/json's limit.
func dataSeeds() []string {
	deep := func(n int, open, close string) string {
		return `{"a":` + strings.Repeat(open, n-1) + strings.Repeat(close, n-1) + `}`
	}
	return []string{
		``, `[]`, `null`, `"x"`, `{}`, `{ }`, `{"a":[]}`, `{"a":[ ]}`, `{"a":{}}`,
		`{"a":1}`, `{"a":-0}`, `{"a":-0.5e+10}`, `{"a":1E-2}`, `{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`, `{"a":+1}`,
		`{"a":true,"b":false,"c":null}`, `{"a":tru}`, `{"a":nul}`, `{"a":True}`,
		`{"a":"\"\\\/\b\f\n\r\t\u00e9\uD83D"}`, `{"a":"\x"}`, `{"a":"\u12"}`, `{"a":"\u12G4"}`, "{\"a\":\"tab\there\"}", "{\"a\":\"\x7f\xff\xfe\"}",
		`{"a":"<b>"}`, `{"a":"\u003cb\u003e"}`, `{"a":"&"}`, "{\"a\":\"\u2028\"}", "{\"a\":\"\u2029\"}", "{\"a\":\"\xe2\x80\"}", "{\"a\":\"\xe2\x80\xa7\"}",
		`{"a": 1}`, `{"a" :1}`, `{"a":1 }`, `{"a":1} `, "{\"a\":1}\n", `{ "a":1}`, `{"a":[1, 2]}`, `{"a":[1 ,2]}`, `{"a":"x y"}`,
		`{"a":"<"} `, `{"a":1} {"b":2}`, `{"a":1}{"b":2}`, `{"a":1}x`, `{"a":1,}`, `{"a":[1,]}`, `{,"a":1}`, `{"a"}`, `{"a":}`, `{"a":1`, `{"a":"x`, `{"a":"x\`, `{"a":[1}`, `{"a":{]}`, `{1:2}`,
		`{"a":"<", "b":}`, `{"a":"\u2028<"}`, "{\"a\":\"<\u2028\"}", "{\"a\":\"\u2028\", \"b\":1}",
		deep(maxDataDepth-1, "[", "]"), deep(maxDataDepth, "[", "]"), deep(maxDataDepth+1, "[", "]"),
		deep(maxDataDepth, `{"b":`, "}"), deep(maxDataDepth+1, `{"b":`, "}"),
		`{"a":` + strings.Repeat("[", maxDataDepth-1) + strings.Repeat("]", maxDataDepth-2) + `}`,
	}
}

func TestCheckDataMatchesReference(t *testing.T) {
	var d dataChecker
	for _, seed := range dataSeeds() {
		got, want := d.check([]byte(seed)), referenceCheckData([]byte(seed))
		if !errors.Is(got, want) || (got == nil) != (want == nil) {
			t.Errorf("check(%.80q) = %v, want %v", seed, got, want)
		}
	}
}

// TestCheckDataMutations compares the checker with the reference on
// thousands of mutations of realistic data: bytes that matter to JSON
// inserted, replaced and removed at random places.
func TestCheckDataMutations(t *testing.T) {
	bases := [][]byte{}
	for _, line := range goldenLines(t) {
		e, err := parseLine(line)
		if err != nil {
			t.Fatal(err)
		}
		if len(e.Data) > 0 {
			bases = append(bases, e.Data)
		}
	}
	var alphabet []string
	for _, c := range []byte("{}[]:,\"\\ \t\n-+.eE0159aftnulr<>&/\xe2\x80\xa8\xa9\x01\xff") {
		alphabet = append(alphabet, string(c))
	}
	alphabet = append(alphabet, "\u2028", "\u2029", `\u00`, `":"`, `","`, `":[`, `],"`)
	rng := rand.New(rand.NewPCG(7, 11))
	var d dataChecker
	verdicts := map[string]int{}
	for range 20_000 {
		b := bytes.Clone(bases[rng.IntN(len(bases))])
		for range 1 + rng.IntN(3) {
			i := rng.IntN(len(b) + 1)
			c := alphabet[rng.IntN(len(alphabet))]
			switch rng.IntN(3) {
			case 0:
				b = append(b[:i], append([]byte(c), b[i:]...)...)
			case 1:
				if i < len(b) {
					b = append(b[:i], append([]byte(c), b[i+1:]...)...)
				}
			default:
				if i < len(b) {
					b = append(b[:i], b[i+1:]...)
				}
			}
		}
		got, want := d.check(b), referenceCheckData(b)
		if got != want {
			t.Fatalf("check(%q) = %v, want %v", b, got, want)
		}
		verdicts[errString(want)]++
	}
	// The mutations must reach every verdict, or the test shows little.
	for _, err := range []error{nil, errDataNotObject, errDataInvalid, errDataHTML, errDataLineSep, errDataSpace} {
		if verdicts[errString(err)] == 0 {
			t.Errorf("no mutation gave %v: %v", err, verdicts)
		}
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// FuzzCheckData checks that the one-pass checker agrees with json.Valid
// and the form scan on any input.
func FuzzCheckData(f *testing.F) {
	for _, seed := range dataSeeds() {
		if len(seed) < 1000 {
			f.Add([]byte(seed))
		}
	}
	var d dataChecker
	f.Fuzz(func(t *testing.T, data []byte) {
		if got, want := d.check(data), referenceCheckData(data); got != want {
			t.Fatalf("check(%q) = %v, want %v", data, got, want)
		}
	})
}

// BenchmarkCheckData checks the data of a generated daemon log's entries.
func BenchmarkCheckData(b *testing.B) {
	path := filepath.Join(b.TempDir(), "history.log")
	writeHistoryLog(b, path, 200, 30)
	f, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	var data [][]byte
	size := 0
	for _, line := range bytes.Split(bytes.TrimSuffix(f, []byte("\n")), []byte("\n")) {
		e, err := parseLine(line)
		if err != nil {
			b.Fatal(err)
		}
		data = append(data, e.Data)
		size += len(e.Data)
	}
	var d dataChecker
	b.SetBytes(int64(size))
	for b.Loop() {
		for _, x := range data {
			if err := d.check(x); err != nil {
				b.Fatal(err)
			}
		}
	}
}
