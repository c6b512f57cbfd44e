// Package audit is jitssh's tamper-evident record: an append-only,
// hash-chained event log that an auditor can verify, and an index to query it.
//
// # Format
//
// The log is a file of JSON Lines: one [Entry] per line, UTF-8, each line
// ended by '\n'. Every line is the canonical encoding of its entry (what
// encoding/json produces for it, fields in declaration order, no spaces), so
// one entry has exactly one byte representation. Entries are numbered
// seq = 1, 2, 3, ... without gaps. Each entry's prev field is the hex SHA-256
// of the previous line's exact bytes without its newline; the first entry's
// prev is [GenesisHash], the SHA-256 of the empty string, as if the log began
// with an empty line. The head hash of a log is the SHA-256 of its last line.
// Because every line commits to the one before it, editing, deleting,
// inserting or reordering lines breaks the chain at a precise line, which
// [Verify] reports.
//
// # What the log promises
//
//   - Append only: entries are only ever added at the end. Nothing in this
//     package rewrites or removes an entry.
//   - Durable before acknowledged: [Log.Append] returns only after the entry
//     is written and fsync'd, so a caller acknowledges an action (issues a
//     certificate, lets a push through) only once it is on the record.
//     Concurrent appends in one process share one write and one fsync (group
//     commit); appends from several processes are serialised by an exclusive
//     flock on the file, and each writer re-reads the tail when another
//     process has written, so seq and prev stay correct.
//   - A torn tail is never silent. A crash in the middle of a write can leave
//     a last line without its newline, or one that does not parse. [Open]
//     refuses such a log with an error wrapping [ErrTornTail] that says where;
//     with [Options.RepairTornTail] it moves the torn bytes to a sidecar file
//     PATH.torn-<unixnanos>, records an "audit.repair" entry naming it, and
//     continues from the last good entry. Torn bytes are never silently kept
//     and never silently dropped.
//
// # What it does not promise
//
// The chain proves the log is internally consistent, not that it is the log
// that was written: anyone who can write the file can truncate it, or rewrite
// the whole chain from any point on, and the result verifies. That is what
// signed checkpoints are for. [Log.Checkpoint] signs (seq, head hash, time)
// with an SSH key in the SSHSIG format (namespace [CheckpointNamespace],
// verifiable with ssh-keygen -Y verify), records the signature as a
// "checkpoint" entry, and replaces the sidecar file PATH.head. Copied
// somewhere the log's writers cannot reach, a head file lets
// [VerifyCheckpoint] detect that entries up to its seq were cut off or
// rewritten. Entries after the newest checkpoint an auditor holds are only
// as trustworthy as the file.
//
// # Reading
//
// [Verify] and [VerifyCheckpoint] stream a log in constant memory and stop
// at the first failure. A [Checker] is what an auditor runs: it checks one
// log or several (a daemon's and Git servers') completely, chain,
// checkpoints, signed head, signatures, certificates and the policy
// version that decided each request, and reports every failure with its
// line and seq rather than the first.
// [BuildIndex] verifies a log while loading it into an [Index] (go-memdb) for
// lookups by seq, kind, actor, certificate serial, repository and time. To
// read a log that is being written, open it with [OpenSnapshot], which sees
// whole entries only.
//
// The log file must not be renamed, replaced or rotated while it is open, and
// the package relies on flock(2), so it runs on Unix systems only.
package audit
