package ca

import "strings"

// KeyID is the key ID of a grant certificate: the person (or CI workload)
// who asked, a slash, and the request's ID. Servers log it and the KRL can
// revoke by it; the request ID makes it unique.
func KeyID(person, requestID string) string {
	return person + "/" + requestID
}

// ParseKeyID splits a key ID made by KeyID. The split is at the last slash,
// since a CI workload's name holds slashes (its repository) and a request
// ID never does. A key ID without a slash, such as one chosen for a
// break-glass certificate, is all person and no request.
func ParseKeyID(keyID string) (person, requestID string) {
	i := strings.LastIndexByte(keyID, '/')
	if i < 0 {
		return keyID, ""
	}
	return keyID[:i], keyID[i+1:]
}
