package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/hiddeco/sshsig"
	"github.com/jitssh/jitssh/internal/atomicfile"
	"golang.org/x/crypto/ssh"
)

// CheckpointNamespace is the SSHSIG namespace of checkpoint signatures, so
// that a signature made for anything else never passes as one.
const CheckpointNamespace = "jitssh-audit-checkpoint@jitssh"

// HeadSuffix is appended to the log's path to name the file holding its
// newest signed head.
const HeadSuffix = ".head"

// maxHeadFileSize bounds what ParseHead accepts; an RSA-4096 signature
// armored is under 2 KB.
const maxHeadFileSize = 64 << 10

// Head is a signed statement that the log had, at Time, the entry Seq whose
// line hashes to Hash. It is the content of the PATH.head file and the data
// of "checkpoint" entries.
type Head struct {
	Seq  uint64    `json:"seq"`
	Hash string    `json:"hash"`
	Time time.Time `json:"time"`
	// Signature is an armored SSHSIG ("-----BEGIN SSH SIGNATURE-----") over
	// Message(), namespace CheckpointNamespace.
	Signature string `json:"signature"`
}

// Message returns the bytes the signature covers:
//
//	jitssh audit checkpoint v1
//	seq <seq>
//	hash <hex sha-256 of line seq>
//	time <RFC 3339 UTC>
//
// each line ended by '\n'. With the message in a file and the signature in
// another, `ssh-keygen -Y verify -n jitssh-audit-checkpoint@jitssh ...`
// checks a checkpoint without jitssh.
func (h Head) Message() []byte {
	var b bytes.Buffer
	b.WriteString("jitssh audit checkpoint v1\n")
	b.WriteString("seq " + strconv.FormatUint(h.Seq, 10) + "\n")
	b.WriteString("hash " + h.Hash + "\n")
	b.WriteString("time " + h.Time.UTC().Format(time.RFC3339Nano) + "\n")
	return b.Bytes()
}

// ParseHead decodes a head file, or the data of a checkpoint entry. It does
// not check the signature; VerifyHead does.
func ParseHead(b []byte) (Head, error) {
	if len(b) > maxHeadFileSize {
		return Head{}, fmt.Errorf("parse checkpoint head: %d bytes is too large", len(b))
	}
	var h Head
	if err := json.Unmarshal(b, &h); err != nil {
		return Head{}, fmt.Errorf("parse checkpoint head: %w", err)
	}
	if !validHash(h.Hash) {
		return Head{}, errors.New("parse checkpoint head: hash is not a hex SHA-256")
	}
	if h.Signature == "" {
		return Head{}, errors.New("parse checkpoint head: no signature")
	}
	return h, nil
}

// VerifyHead checks that h is signed, for CheckpointNamespace, by trusted.
// Failures wrap ErrBadSignature.
func VerifyHead(h Head, trusted ssh.PublicKey) error {
	sig, err := sshsig.Unarmor([]byte(h.Signature))
	if err != nil {
		return fmt.Errorf("checkpoint at seq %d: %w: %v", h.Seq, ErrBadSignature, err)
	}
	if err := sshsig.Verify(bytes.NewReader(h.Message()), sig, trusted, sig.HashAlgorithm, CheckpointNamespace); err != nil {
		return fmt.Errorf("checkpoint at seq %d: %w: %v", h.Seq, ErrBadSignature, err)
	}
	return nil
}

// signHead signs h in place.
func signHead(h *Head, signer ssh.Signer) error {
	sig, err := sshsig.Sign(bytes.NewReader(h.Message()), signer, sshsig.HashSHA512, CheckpointNamespace)
	if err != nil {
		return fmt.Errorf("sign checkpoint at seq %d: %w", h.Seq, err)
	}
	h.Signature = string(sshsig.Armor(sig))
	return nil
}

// Checkpoint signs the log's current head (seq, hash, time) with signer,
// appends it as a "checkpoint" entry whose actor is the signer's SHA256
// fingerprint, and replaces PATH.head with it, unless that file already
// holds a later checkpoint. It returns the checkpoint entry; the signed head
// is its data (see ParseHead).
//
// The head is taken and made durable first and signed outside the file
// lock, so a slow signer (an ssh-agent) never holds up other writers; entries
// appended meanwhile come after the signed seq, and the checkpoint entry
// itself is not covered by its own signature.
func (l *Log) Checkpoint(signer ssh.Signer) (Entry, error) {
	if l.opts.Journal {
		return Entry{}, fmt.Errorf("%w: %s is a journal; sign its head with SignHead", ErrInvalidEntry, l.path)
	}
	h, err := l.durableHead()
	if err != nil {
		return Entry{}, fmt.Errorf("checkpoint audit log %s: %w", l.path, err)
	}
	return l.checkpointAt(h, signer)
}

func (l *Log) checkpointAt(h head, signer ssh.Signer) (Entry, error) {
	hd := Head{Seq: h.seq, Hash: h.hash, Time: time.Now().UTC()}
	if err := signHead(&hd, signer); err != nil {
		return Entry{}, err
	}
	data, err := json.Marshal(hd)
	if err != nil {
		return Entry{}, fmt.Errorf("encode checkpoint: %w", err)
	}
	o := &op{
		kind:     KindCheckpoint,
		actor:    ssh.FingerprintSHA256(signer.PublicKey()),
		data:     data,
		headFile: append(data, '\n'),
		headSeq:  hd.Seq,
	}
	if err := l.submit(o); err != nil {
		return Entry{}, err
	}
	// Only a checkpoint entry right after what it covers leaves nothing
	// new: when another entry slipped in between, the next tick must
	// cover it, or a periodic checkpoint would never come again.
	if o.entry.Seq != 0 && o.entry.Seq == hd.Seq+1 {
		l.lastCheckpoint.Store(o.entry.Seq)
	}
	return o.entry, o.err
}

// writeHeadFile atomically replaces the head file with b, unless it already
// holds a checkpoint at seq or later: a slow checkpoint must not replace a
// newer one. The caller holds the log's lock, which serialises this.
func writeHeadFile(path string, b []byte, seq uint64) error {
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		if h, perr := ParseHead(old); perr == nil && h.Seq >= seq {
			return nil
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read head file: %w", err)
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// VerifyCheckpoint verifies the log read from r like Verify and checks it
// against a signed head (the content of a PATH.head file) that trusted
// signed. It fails with ErrBadSignature when the head's signature does not
// verify with trusted, and with a *VerifyError wrapping ErrTruncated when the
// log ends before the head's seq, or when its entry at that seq does not hash
// to the signed hash (the log was cut and regrown, or rewritten).
func VerifyCheckpoint(r io.Reader, headFile []byte, trusted ssh.PublicKey) (Summary, error) {
	hd, err := ParseHead(headFile)
	if err != nil {
		return Summary{}, err
	}
	if err := VerifyHead(hd, trusted); err != nil {
		return Summary{}, err
	}
	sum, err := verifyStream(r, func(e *Entry, line []byte, lineNo int) error {
		if e.Seq == hd.Seq && lineHash(line) != hd.Hash {
			return &VerifyError{Line: lineNo, Seq: e.Seq, Err: ErrTruncated,
				Reason: fmt.Sprintf("entry does not hash to the head signed at %s: the log was rewritten", hd.Time.Format(time.RFC3339))}
		}
		return nil
	})
	if err != nil {
		return sum, err
	}
	if hd.Seq == 0 && hd.Hash != GenesisHash {
		return sum, &VerifyError{Line: 1, Err: ErrTruncated, Reason: "a head signed at seq 0 must have the genesis hash"}
	}
	if sum.Entries < hd.Seq {
		return sum, &VerifyError{Line: int(sum.Entries) + 1, Seq: sum.Entries + 1, Err: ErrTruncated,
			Reason: fmt.Sprintf("log ends at seq %d, but a head signed at %s has seq %d", sum.Entries, hd.Time.Format(time.RFC3339), hd.Seq)}
	}
	return sum, nil
}
