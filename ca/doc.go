// Package ca is jitssh's certificate authority: it creates and loads CA keys,
// signs user certificates and hands out break-glass serials.
//
// What the package promises:
//
//   - Every certificate it signs is a user certificate for the requester's
//     own key, of one of these profiles:
//   - grant (the v1 shape, for jitssh's own Git servers): principals are
//     grant principals (git:<access>:<repo>:<refpattern>) and nothing
//     else, never a bare user name; no extensions at all (no pty,
//     forwarding, agent, X11 or user-rc).
//   - github, gitlab, gitea (for Git hosts, which map a certificate to one
//     whole account): the one principal is the host account, never a
//     grant nor anything that parses as one; the only extension is
//     GitHub's login@github.com (or login@HOST for GitHub Enterprise
//     Server) in the github profile; the gitlab key ID is the username;
//     a github certificate is valid for less than a year.
//   - In every profile, ValidAfter is the issue time minus a small backdate
//     for clock skew and ValidBefore is the issue time plus the granted
//     TTL; the only critical option ever set is source-address.
//   - A request is checked completely before a serial is taken, so a refused
//     request never consumes a serial.
//   - CA keys are ed25519, ECDSA P-256 or P-384, or RSA of at least 3072
//     bits. RSA CAs sign with rsa-sha2-512 only: never ssh-rsa (SHA-1), never
//     rsa-sha2-256.
//   - The private key file is written once (an existing CA is never
//     overwritten) and is refused on load when group or others may read or
//     write it.
//
// Serials come from the caller, through a [SerialSource], because only the
// caller can make them durable and unique: the approval daemon records every
// serial before the certificate leaves it. The daemon's serials are below
// 2^63. Break-glass serials from [SerialFile] have the top bit set
// (serial | 1<<63), so the two spaces can never collide even when both sign
// with the same CA key.
package ca
