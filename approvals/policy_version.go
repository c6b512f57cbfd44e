package approvals

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
)

// digest names the policy version on the audit log and in the state. It is
// the policy's Digest once that exists; until then, a hash of the decisive
// part of the configuration.
func (p *Policy) digest() string {
	return provisionalDigest(p)
}

func provisionalDigest(p *Policy) string {
	b, _ := json.Marshal(struct {
		People            []Person
		Rules             []Rule
		RequestTimeout    Duration
		MaxPendingPerUser int
	}{p.cfg.People, p.cfg.Rules, p.cfg.RequestTimeout, p.cfg.MaxPendingPerUser})
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}
