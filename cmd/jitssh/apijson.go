package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/jitssh/jitssh/approvals"
)

// apiRequestFields are the JSON keys of apiRequest, spelled exactly.
var apiRequestFields = jsonFields(reflect.TypeOf(apiRequest{}))

func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			out[name] = true
		}
	}
	return out
}

// decodeAPIRequest reads one call's body: empty, or exactly one JSON
// object. encoding/json alone would take the last of two equal keys, match
// "Repo" or "REPO" to "repo", and ignore what follows the object; a body
// another reader of the same bytes could understand differently is
// refused instead.
func decodeAPIRequest(body []byte) (apiRequest, error) {
	var req apiRequest
	if len(bytes.TrimSpace(body)) == 0 {
		return req, nil
	}
	if err := checkJSONObject(body, apiRequestFields); err != nil {
		return req, fmt.Errorf("%w: malformed request: %v", approvals.ErrBadRequest, err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("%w: malformed request: %v", approvals.ErrBadRequest, err)
	}
	return req, nil
}

// checkJSONObject checks that data is one JSON object, whose keys are
// among fields as spelled there, each once, with nothing after it.
func checkJSONObject(data []byte, fields map[string]bool) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		return errors.New("want a JSON object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return errors.New("want a key")
		}
		switch {
		case !fields[key]:
			return fmt.Errorf("unknown field %q", truncateMethod(key))
		case seen[key]:
			return fmt.Errorf("field %q given twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("data after the JSON object")
	}
	return nil
}
