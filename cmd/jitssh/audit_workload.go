package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jitssh/jitssh/approvals/workload"
	"github.com/jitssh/jitssh/audit"
)

// workloadVerifier checks workload requests' tokens offline with the key
// sets given as NAME=FILE: the token must verify with FILE's keys for the
// issuer URL and audience the request records, as of the request's time.
// Requests of an issuer given no key set are left unchecked.
func workloadVerifier(specs []string) (audit.WorkloadVerifier, error) {
	files := map[string]string{}
	for _, spec := range specs {
		name, file, ok := strings.Cut(spec, "=")
		if !ok || name == "" || file == "" {
			return nil, usageError("--jwks %q: want NAME=FILE, NAME being the daemon's name for the issuer (oidc: name)", spec)
		}
		if _, dup := files[name]; dup {
			return nil, usageError("--jwks: issuer %s given twice", name)
		}
		data, err := readSmallFile(file)
		if err == nil {
			_, err = workload.ParseJWKS(data)
		}
		if err != nil {
			return nil, fmt.Errorf("--jwks %s: %w", spec, err)
		}
		files[name] = file
	}
	if len(files) == 0 {
		return nil, nil
	}
	var mu sync.Mutex
	verifiers := map[workload.Issuer]*workload.Verifier{}
	return func(w *audit.WorkloadData, at time.Time) (*audit.VerifiedWorkload, error) {
		file, ok := files[w.Issuer]
		if !ok {
			return nil, audit.ErrWorkloadUnchecked
		}
		iss := workload.Issuer{Name: w.Issuer, Issuer: w.IssuerURL, Audience: w.Audience, JWKSFile: file}
		mu.Lock()
		v := verifiers[iss]
		if v == nil {
			var err error
			if v, err = workload.New([]workload.Issuer{iss}, workload.Options{}); err != nil {
				mu.Unlock()
				return nil, err
			}
			verifiers[iss] = v
		}
		mu.Unlock()
		id, err := v.Verify(context.Background(), w.Token, at)
		if err != nil {
			return nil, err
		}
		return &audit.VerifiedWorkload{IssuerURL: id.URL, Subject: id.Subject, TokenID: id.ID, Claims: id.Claims}, nil
	}, nil
}
