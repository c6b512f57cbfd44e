package audit

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
)

// FuzzIndexFields checks that what the index keys an entry on agrees with
// what encoding/json reads from the same data: a log's data is anyone's
// who could write to it, and a wrong key would hide an entry from its
// lookups.
func FuzzIndexFields(f *testing.F) {
	f.Add([]byte(`{"id":"req-01","repo":"demo/app","serial":12}`))
	f.Add([]byte(`{"repo":"a\u0026b","serial":1,"id":"x","nested":{"id":"y"}}`))
	f.Add([]byte(`{"serial":-1,"id":7}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		serial, hasSerial, repo, id := indexFields(data)
		var top map[string]json.RawMessage
		if json.Unmarshal(data, &top) != nil {
			return // not an object: anything indexFields says is unused by valid logs
		}
		if _, dup := duplicateKeys(data); dup {
			return // the log refuses such data (canonical form)
		}
		var wantRepo, wantID string
		_ = json.Unmarshal(top["repo"], &wantRepo)
		_ = json.Unmarshal(top["id"], &wantID)
		if repo != wantRepo || id != wantID {
			t.Fatalf("indexFields(%q) = repo %q id %q, json says %q %q", data, repo, id, wantRepo, wantID)
		}
		n, err := strconv.ParseUint(string(top["serial"]), 10, 64)
		if hasSerial != (err == nil) || hasSerial && n != serial {
			t.Fatalf("indexFields(%q) = serial %d %v, json says %s", data, serial, hasSerial, top["serial"])
		}
	})
}

// duplicateKeys reports whether an object repeats a top-level key, where
// encoding/json keeps the last and a scanner may keep another.
func duplicateKeys(data []byte) (string, bool) {
	dec := json.NewDecoder(bytesReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return "", false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		key, _ := tok.(string)
		if seen[key] {
			return key, true
		}
		seen[key] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return "", false
		}
	}
	return "", false
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }
