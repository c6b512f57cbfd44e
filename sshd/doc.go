// Package sshd turns a verified SSH user certificate and an SSH exec
// request into exactly the Git operation the certificate's grants allow.
//
// It is the one authorization core shared by both Git front-ends: the
// native server (jitssh git-server) and the forced command that stock
// OpenSSH runs (jitssh git-shell, with jitssh principals-command). A rule is
// written once, here.
//
// The package promises:
//
//   - Verify accepts only user certificates signed by a trusted CA, inside
//     their validity window, not revoked, with no critical option other
//     than a satisfied source-address, and with at least one well-formed
//     grant. Plain keys get nothing.
//   - Decide runs only git-upload-pack, git-receive-pack and
//     git-upload-archive on a bare repository under the configured root, and
//     only when a grant covers it. A repository no grant names gets the
//     same answer whether or not it exists; every refusal (ClientMessage,
//     a refused ref's reason) says what was missing in terms of what the
//     client sent and its own certificate, never naming a ref it may not
//     read.
//   - Serve makes git itself enforce the grant's refs: refs outside the grant
//     are hidden and cannot be fetched, archived or updated, and a ref-scoped
//     writer cannot push objects that reach into history it cannot read.
//     Every question about a ref, on either front-end, is answered by one
//     rule, DecideRef.
//   - Both front-ends run one pipeline: verify, decide, record, run git,
//     record. An allowed operation acts only once its decision is recorded
//     (a push: before any ref changes), and is refused when that record
//     cannot be written.
//   - Behind a Git host (Upstream), the native server has no repository of
//     its own and decides exactly as above. It sends the host nothing
//     outside the grant: every ref update and the whole pack are read and
//     checked before a byte goes upstream, and an atomic push with one
//     refused ref sends nothing. A ref-scoped reader is shown only the refs
//     it may read, and only wants of tips it was shown reach the host.
//     Upstream it talks only to a host presenting a pinned key, with a
//     fresh certificate of the host's profile that lives minutes and never
//     past the grant.
//
// Every decision, allowed or refused, is handed to a Recorder with the
// certificate serial and key ID, and so is every certificate refused at
// authentication.
package sshd
