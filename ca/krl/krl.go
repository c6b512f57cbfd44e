// Package krl reads and writes OpenSSH key revocation lists (KRLs), the
// binary format of PROTOCOL.krl that sshd reads through RevokedKeys, that
// `ssh-keygen -k` writes and `ssh-keygen -Q` queries.
//
// Supported: every section OpenSSH defines. Certificates are revoked per CA
// (or for any CA) by serial list, serial range, serial bitmap and key ID;
// plain keys by explicit key and by SHA1 or SHA256 hash of the key blob.
// Extension sections and subsections that are not critical are skipped and
// critical ones refused, as current OpenSSH does. Signature sections are
// parsed for structure only and dropped: jitssh never verifies a KRL's
// signature and does not rely on one (OpenSSH has dropped KRL signatures
// too). A KRL must reach the Git server by a trusted path, such as a file
// the operator wrote.
//
// What a KRL promises: a key or certificate it matches is refused. What it
// does not: it says nothing about keys it does not list (validity windows,
// principals and CA trust are checked elsewhere), and its version and date
// are informational; nothing here stops an older KRL from replacing a newer
// one.
package krl

import (
	"bytes"
	"cmp"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrInvalid is wrapped by every error Parse returns, and by Marshal
// and RevokeSerialRange when asked to write something the format cannot
// hold.
var ErrInvalid = errors.New("invalid KRL")

// Wire constants from OpenSSH's PROTOCOL.krl.
const (
	fileMagic     = "SSHKRL\n\x00"
	formatVersion = 1

	sectionCertificates = 1
	sectionExplicitKey  = 2
	sectionSHA1         = 3
	sectionSignature    = 4
	sectionSHA256       = 5
	sectionExtension    = 255

	certSerialList   = 0x20
	certSerialRange  = 0x21
	certSerialBitmap = 0x22
	certKeyID        = 0x23
	certExtension    = 0x39

	// maxBitmapBytes is OpenSSH's limit on an mpint (SSHBUF_MAX_BIGNUM),
	// which bounds a bitmap subsection to 16384 serials.
	maxBitmapBytes = 16384 / 8
)

// List is an OpenSSH key revocation list.
//
// Normal form. Parse returns a KRL in normal form and the Revoke methods
// keep it there: one non-empty section per CA, sections ordered by the CA
// key's wire encoding (the wildcard section first); within a section, Serials and
// Ranges as described on CertSection and KeyIDs sorted and unique; Keys
// plain (not certificates), sorted by wire encoding and unique; SHA1s and
// SHA256s sorted and unique. IsRevoked relies on the sorting for its binary
// searches, so code that fills the fields by hand must keep to this form.
// Marshal writes the normal form of whatever the fields hold, so its output
// is deterministic.
//
// A KRL is safe for concurrent IsRevoked calls as long as nothing modifies
// it. Memory is linear in the size of the parsed file: a serial range is
// kept as a range however many serials it covers.
type List struct {
	// Version is the KRL's own version number; OpenSSH expects it to grow
	// with every change but does not enforce it.
	Version uint64
	// GeneratedDate is written as whole seconds since the Unix epoch. The
	// zero Time is written as 0 and 0 parses as the zero Time.
	GeneratedDate time.Time
	// Comment must not contain a NUL byte.
	Comment string
	// Certs revokes certificates, by issuing CA.
	Certs []*CertSection
	// Keys revokes plain keys, and with them every certificate for the key
	// and every certificate signed by it.
	Keys []ssh.PublicKey
	// SHA1s and SHA256s revoke plain keys by the hash of their wire
	// encoding, with the same effect as Keys.
	SHA1s   [][]byte
	SHA256s [][]byte
}

// CertSection revokes certificates issued by one CA, by serial or by key
// ID.
//
// The revoked serials are Serials plus every serial in Ranges. In normal
// form both are sorted, Ranges hold runs of two or more contiguous serials,
// and no revoked serial is repeated or adjacent to another in a different
// entry: every maximal run of contiguous serials is either one element of
// Serials or one element of Ranges. Serial 0 is never revoked (OpenSSH
// certificates without a serial carry 0); revoke those by key ID.
type CertSection struct {
	CA      ssh.PublicKey // nil means any CA (the wildcard section)
	Serials []uint64
	Ranges  []SerialRange
	KeyIDs  []string
}

// SerialRange is the inclusive range of serials First..Last.
type SerialRange struct {
	First, Last uint64
}

// RevokeSerial revokes the certificates with the given serials issued by
// ca, or by any CA when ca is nil. Each call re-sorts the section, so pass
// many serials in one call rather than one call each. Serial 0 cannot be
// revoked; Marshal refuses a KRL that lists it.
func (k *List) RevokeSerial(ca ssh.PublicKey, serials ...uint64) {
	if len(serials) == 0 {
		return
	}
	ivs := make([]SerialRange, len(serials))
	for i, s := range serials {
		ivs[i] = SerialRange{s, s}
	}
	k.sectionFor(ca).add(ivs)
}

// RevokeSerialRange revokes the certificates with serials first..last
// inclusive issued by ca, or by any CA when ca is nil, without listing them
// one by one.
func (k *List) RevokeSerialRange(ca ssh.PublicKey, first, last uint64) error {
	if first == 0 || first > last {
		return fmt.Errorf("%w: serial range %d-%d: must be 1 <= first <= last", ErrInvalid, first, last)
	}
	k.sectionFor(ca).add([]SerialRange{{first, last}})
	return nil
}

// RevokeKeyID revokes the certificates with the given key IDs issued by ca,
// or by any CA when ca is nil.
func (k *List) RevokeKeyID(ca ssh.PublicKey, ids ...string) {
	if len(ids) == 0 {
		return
	}
	s := k.sectionFor(ca)
	s.KeyIDs = append(s.KeyIDs, ids...)
	slices.Sort(s.KeyIDs)
	s.KeyIDs = slices.Compact(s.KeyIDs)
}

// RevokeKey revokes plain keys explicitly. A certificate stands for its
// underlying key, as with `ssh-keygen -k`.
func (k *List) RevokeKey(keys ...ssh.PublicKey) {
	for _, key := range keys {
		if key != nil {
			k.Keys = append(k.Keys, plainKey(key))
		}
	}
	k.Keys = sortKeys(k.Keys)
}

// sectionFor returns the section for ca, adding an empty one in normal-form
// order if there is none.
func (k *List) sectionFor(ca ssh.PublicKey) *CertSection {
	blob := caWireBlob(ca)
	i, found := slices.BinarySearchFunc(k.Certs, blob, func(s *CertSection, b []byte) int {
		return bytes.Compare(caWireBlob(s.CA), b)
	})
	if found {
		return k.Certs[i]
	}
	s := &CertSection{CA: ca}
	k.Certs = slices.Insert(k.Certs, i, s)
	return s
}

// add merges serial ranges into the section, keeping normal form.
func (s *CertSection) add(ivs []SerialRange) {
	s.Serials, s.Ranges = normalize(append(s.allRanges(), ivs...))
}

// allRanges returns every revoked serial of the section as ranges.
func (s *CertSection) allRanges() []SerialRange {
	out := make([]SerialRange, 0, len(s.Serials)+len(s.Ranges))
	for _, n := range s.Serials {
		out = append(out, SerialRange{n, n})
	}
	return append(out, s.Ranges...)
}

// normalize sorts and merges ranges, overlapping or adjacent, and splits
// the result into single serials and runs of two or more.
func normalize(ivs []SerialRange) ([]uint64, []SerialRange) {
	slices.SortFunc(ivs, func(a, b SerialRange) int { return cmp.Compare(a.First, b.First) })
	merged := ivs[:0]
	for _, iv := range ivs {
		if n := len(merged); n > 0 {
			last := &merged[n-1]
			if last.Last == math.MaxUint64 || iv.First <= last.Last+1 {
				last.Last = max(last.Last, iv.Last)
				continue
			}
		}
		merged = append(merged, iv)
	}
	singles := 0
	for _, iv := range merged {
		if iv.First == iv.Last {
			singles++
		}
	}
	var serials []uint64
	var ranges []SerialRange
	if singles > 0 {
		serials = make([]uint64, 0, singles)
	}
	if len(merged) > singles {
		ranges = make([]SerialRange, 0, len(merged)-singles)
	}
	for _, iv := range merged {
		if iv.First == iv.Last {
			serials = append(serials, iv.First)
		} else {
			ranges = append(ranges, iv)
		}
	}
	return serials, ranges
}

// revokesSerial reports whether the section revokes serial n.
func (s *CertSection) revokesSerial(n uint64) bool {
	if _, ok := slices.BinarySearch(s.Serials, n); ok {
		return true
	}
	i := sort.Search(len(s.Ranges), func(i int) bool { return s.Ranges[i].Last >= n })
	return i < len(s.Ranges) && s.Ranges[i].First <= n
}

// IsRevoked reports whether the KRL revokes key, with OpenSSH's semantics. A
// plain key is revoked when it is listed explicitly or by hash. A
// certificate is revoked when its own key is, when its CA key is (as a plain
// key), or when the section for its CA or the wildcard section lists its key
// ID or its serial; serial 0 never matches a serial. A nil KRL revokes
// nothing.
func (k *List) IsRevoked(key ssh.PublicKey) bool {
	if k == nil || key == nil {
		return false
	}
	cert, ok := key.(*ssh.Certificate)
	if !ok {
		return k.plainRevoked(key)
	}
	if k.plainRevoked(cert.Key) {
		return true
	}
	if cert.SignatureKey == nil {
		return false
	}
	caBlob := cert.SignatureKey.Marshal()
	for _, s := range k.Certs {
		if s.CA != nil && !bytes.Equal(s.CA.Marshal(), caBlob) {
			continue
		}
		if _, ok := slices.BinarySearch(s.KeyIDs, cert.KeyId); ok {
			return true
		}
		if cert.Serial != 0 && s.revokesSerial(cert.Serial) {
			return true
		}
	}
	return k.plainRevoked(cert.SignatureKey)
}

// plainRevoked checks the explicit key and hash lists for key.
func (k *List) plainRevoked(key ssh.PublicKey) bool {
	if key == nil || len(k.Keys)+len(k.SHA1s)+len(k.SHA256s) == 0 {
		return false
	}
	blob := plainKey(key).Marshal()
	if len(k.Keys) > 0 {
		i := sort.Search(len(k.Keys), func(i int) bool { return bytes.Compare(k.Keys[i].Marshal(), blob) >= 0 })
		if i < len(k.Keys) && bytes.Equal(k.Keys[i].Marshal(), blob) {
			return true
		}
	}
	if len(k.SHA1s) > 0 {
		sum := sha1.Sum(blob)
		if _, ok := slices.BinarySearchFunc(k.SHA1s, sum[:], bytes.Compare); ok {
			return true
		}
	}
	if len(k.SHA256s) > 0 {
		sum := sha256.Sum256(blob)
		if _, ok := slices.BinarySearchFunc(k.SHA256s, sum[:], bytes.Compare); ok {
			return true
		}
	}
	return false
}

// plainKey returns the key a certificate certifies, or key itself.
func plainKey(key ssh.PublicKey) ssh.PublicKey {
	for {
		cert, ok := key.(*ssh.Certificate)
		if !ok || cert.Key == nil {
			return key
		}
		key = cert.Key
	}
}

// caWireBlob is the wire encoding of a section's CA, empty for the wildcard.
func caWireBlob(ca ssh.PublicKey) []byte {
	if ca == nil {
		return nil
	}
	return ca.Marshal()
}

// sortKeys sorts keys by wire encoding and drops duplicates.
func sortKeys(keys []ssh.PublicKey) []ssh.PublicKey {
	type entry struct {
		blob []byte
		key  ssh.PublicKey
	}
	es := make([]entry, len(keys))
	for i, key := range keys {
		es[i] = entry{key.Marshal(), key}
	}
	slices.SortFunc(es, func(a, b entry) int { return bytes.Compare(a.blob, b.blob) })
	es = slices.CompactFunc(es, func(a, b entry) bool { return bytes.Equal(a.blob, b.blob) })
	out := make([]ssh.PublicKey, len(es))
	for i, e := range es {
		out[i] = e.key
	}
	return out
}

// sortBlobs returns a sorted copy of blobs without duplicates.
func sortBlobs(blobs [][]byte) [][]byte {
	out := slices.Clone(blobs)
	slices.SortFunc(out, bytes.Compare)
	return slices.CompactFunc(out, bytes.Equal)
}

// Marshal encodes the KRL in the binary format sshd's RevokedKeys and
// `ssh-keygen -Q` read. The output is the normal form (see KRL) whatever
// order the fields are in: sections for the same CA are merged, sections
// are ordered by CA, runs of three or more serials are written as ranges and
// other serials as one list, and empty sections are left out. It fails,
// wrapping ErrInvalid, on serial 0, a NUL byte in the comment or a key
// ID, a hash of the wrong length, a certificate as CA key, or a date before
// 1970.
func (k *List) Marshal() ([]byte, error) {
	var date uint64
	if !k.GeneratedDate.IsZero() {
		if k.GeneratedDate.Before(time.Unix(0, 0)) {
			return nil, fmt.Errorf("%w: generated date %s is before 1970", ErrInvalid, k.GeneratedDate)
		}
		date = uint64(k.GeneratedDate.Unix())
	}
	if strings.IndexByte(k.Comment, 0) >= 0 {
		return nil, fmt.Errorf("%w: comment contains a NUL byte", ErrInvalid)
	}
	w := &encoder{}
	w.buf = append(w.buf, fileMagic...)
	w.u32(formatVersion)
	w.u64(k.Version)
	w.u64(date)
	w.u64(0)   // flags: none defined
	w.str(nil) // reserved
	w.str([]byte(k.Comment))

	sections, err := mergeSections(k.Certs)
	if err != nil {
		return nil, err
	}
	for _, s := range sections {
		body, err := s.marshal()
		if err != nil {
			return nil, err
		}
		w.section(sectionCertificates, body)
	}

	if len(k.Keys) > 0 {
		keys := make([]ssh.PublicKey, 0, len(k.Keys))
		for _, key := range k.Keys {
			if key == nil {
				return nil, fmt.Errorf("%w: nil revoked key", ErrInvalid)
			}
			keys = append(keys, plainKey(key))
		}
		body := &encoder{}
		for _, key := range sortKeys(keys) {
			body.str(key.Marshal())
		}
		w.section(sectionExplicitKey, body)
	}
	for _, h := range []struct {
		typ    byte
		name   string
		size   int
		hashes [][]byte
	}{
		{sectionSHA1, "SHA1", sha1.Size, k.SHA1s},
		{sectionSHA256, "SHA256", sha256.Size, k.SHA256s},
	} {
		if len(h.hashes) == 0 {
			continue
		}
		body := &encoder{}
		for _, sum := range sortBlobs(h.hashes) {
			if len(sum) != h.size {
				return nil, fmt.Errorf("%w: %s hash of %d bytes, want %d", ErrInvalid, h.name, len(sum), h.size)
			}
			body.str(sum)
		}
		w.section(h.typ, body)
	}
	if w.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, w.err)
	}
	return w.buf, nil
}

// mergeSections returns the non-empty sections of certs in normal form,
// one per CA, ordered by CA.
func mergeSections(certs []*CertSection) ([]*CertSection, error) {
	byCA := map[string]*CertSection{}
	ivs := map[string][]SerialRange{}
	for _, s := range certs {
		if s == nil {
			continue
		}
		if _, ok := s.CA.(*ssh.Certificate); ok {
			return nil, fmt.Errorf("%w: certificate section: CA key is a certificate", ErrInvalid)
		}
		key := string(caWireBlob(s.CA))
		m := byCA[key]
		if m == nil {
			m = &CertSection{CA: s.CA}
			byCA[key] = m
		}
		ivs[key] = append(ivs[key], s.allRanges()...)
		m.KeyIDs = append(m.KeyIDs, s.KeyIDs...)
	}
	out := make([]*CertSection, 0, len(byCA))
	for key, m := range byCA {
		m.Serials, m.Ranges = normalize(ivs[key])
		slices.Sort(m.KeyIDs)
		m.KeyIDs = slices.Compact(m.KeyIDs)
		if len(m.Serials)+len(m.Ranges)+len(m.KeyIDs) > 0 {
			out = append(out, m)
		}
	}
	slices.SortFunc(out, func(a, b *CertSection) int {
		return bytes.Compare(caWireBlob(a.CA), caWireBlob(b.CA))
	})
	return out, nil
}

// marshal encodes a section already in normal form. Isolated serials and
// pairs go in one serial list (8 bytes a serial); longer runs each become a
// range subsection (21 bytes whatever their length).
func (s *CertSection) marshal() (*encoder, error) {
	caName := "any CA"
	if s.CA != nil {
		caName = ssh.FingerprintSHA256(s.CA)
	}
	w := &encoder{}
	w.str(caWireBlob(s.CA))
	w.str(nil) // reserved

	list := &encoder{}
	var ranges []SerialRange
	for _, iv := range s.allRanges() {
		if iv.First == 0 {
			return nil, fmt.Errorf("%w: certificate section for %s: serial 0 cannot be revoked; revoke by key ID", ErrInvalid, caName)
		}
		if iv.Last-iv.First >= 2 {
			ranges = append(ranges, iv)
			continue
		}
		for n := iv.First; ; n++ {
			list.u64(n)
			if n == iv.Last {
				break
			}
		}
	}
	slices.SortFunc(ranges, func(a, b SerialRange) int { return cmp.Compare(a.First, b.First) })
	if len(list.buf) > 0 {
		w.section(certSerialList, list)
	}
	for _, iv := range ranges {
		r := &encoder{}
		r.u64(iv.First)
		r.u64(iv.Last)
		w.section(certSerialRange, r)
	}
	if len(s.KeyIDs) > 0 {
		ids := &encoder{}
		for _, id := range s.KeyIDs {
			if strings.IndexByte(id, 0) >= 0 {
				return nil, fmt.Errorf("%w: certificate section for %s: key ID %q contains a NUL byte", ErrInvalid, caName, id)
			}
			ids.str([]byte(id))
		}
		w.section(certKeyID, ids)
	}
	return w, nil
}

// encoder appends SSH wire encodings. The first string too long for its
// uint32 length is remembered in err.
type encoder struct {
	buf []byte
	err error
}

func (w *encoder) u8(v byte)    { w.buf = append(w.buf, v) }
func (w *encoder) u32(v uint32) { w.buf = binary.BigEndian.AppendUint32(w.buf, v) }
func (w *encoder) u64(v uint64) { w.buf = binary.BigEndian.AppendUint64(w.buf, v) }

func (w *encoder) str(b []byte) {
	if uint64(len(b)) > math.MaxUint32 {
		if w.err == nil {
			w.err = fmt.Errorf("string of %d bytes is too long", len(b))
		}
		return
	}
	w.u32(uint32(len(b)))
	w.buf = append(w.buf, b...)
}

// section writes a (sub)section: its type byte and its body as a string.
func (w *encoder) section(typ byte, body *encoder) {
	if body.err != nil && w.err == nil {
		w.err = body.err
	}
	w.u8(typ)
	w.str(body.buf)
}

// errTruncated reports data that ends inside a field.
var errTruncated = errors.New("truncated")

// decoder reads SSH wire encodings from data. base is the offset of
// data[0] in the whole KRL, so errors can say where they happened.
type decoder struct {
	data []byte
	base int
}

func (r *decoder) done() bool { return len(r.data) == 0 }
func (r *decoder) pos() int   { return r.base }

func (r *decoder) take(n int) ([]byte, error) {
	if n < 0 || len(r.data) < n {
		return nil, errTruncated
	}
	b := r.data[:n:n]
	r.data = r.data[n:]
	r.base += n
	return b, nil
}

func (r *decoder) u8() (byte, error) {
	b, err := r.take(1)
	if err != nil {
		return 0, err
	}
	return b[0], nil
}

func (r *decoder) u32() (uint32, error) {
	b, err := r.take(4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

func (r *decoder) u64() (uint64, error) {
	b, err := r.take(8)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b), nil
}

// str reads a length-prefixed string and returns it as a reader positioned
// at its first byte.
func (r *decoder) str() (*decoder, error) {
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(len(r.data)) {
		return nil, fmt.Errorf("string of %d bytes at byte %d: %w", n, r.base-4, errTruncated)
	}
	start := r.base
	b, _ := r.take(int(n))
	return &decoder{data: b, base: start}, nil
}

// cstr reads a string that OpenSSH handles as a C string, refusing NULs.
func (r *decoder) cstr() (string, error) {
	s, err := r.str()
	if err != nil {
		return "", err
	}
	if bytes.IndexByte(s.data, 0) >= 0 {
		return "", fmt.Errorf("string at byte %d contains a NUL byte", s.base)
	}
	return string(s.data), nil
}

// sectionName names a section type for error messages.
func sectionName(typ byte) string {
	switch typ {
	case sectionCertificates:
		return "certificate section"
	case sectionExplicitKey:
		return "explicit key section"
	case sectionSHA1:
		return "SHA1 fingerprint section"
	case sectionSignature:
		return "signature section"
	case sectionSHA256:
		return "SHA256 fingerprint section"
	case sectionExtension:
		return "extension section"
	case certSerialList:
		return "serial list"
	case certSerialRange:
		return "serial range"
	case certSerialBitmap:
		return "serial bitmap"
	case certKeyID:
		return "key ID list"
	case certExtension:
		return "certificate extension"
	}
	return fmt.Sprintf("section type %d", typ)
}

// Parse decodes a binary KRL, as written by `ssh-keygen -k` or Marshal,
// into normal form (see KRL). Like OpenSSH it refuses, with an error
// wrapping ErrInvalid, a bad magic number or format version, truncated
// data, data left over inside a section, unknown section types, critical
// extensions, serial 0, reversed ranges, bitmaps over OpenSSH's size limit
// or running past the largest serial, NUL bytes in strings, and hashes of
// the wrong length. Like OpenSSH 9.4 and later it skips non-critical
// extensions, which older versions refuse. Beyond OpenSSH, it refuses keys
// that golang.org/x/crypto/ssh cannot parse, certificates where a plain key
// belongs, sections after a signature, and generated dates beyond 2^63-1
// seconds. It never expands a range, so memory stays linear in len(data).
func Parse(data []byte) (*List, error) {
	k, err := parseList(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return k, nil
}

func parseList(data []byte) (*List, error) {
	r := &decoder{data: data}
	magic, err := r.take(len(fileMagic))
	if err != nil || string(magic) != fileMagic {
		return nil, errors.New("bad magic: not an OpenSSH KRL")
	}
	k := &List{}
	if err := parseHeader(r, k); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}

	p := &parser{sections: map[string]*pending{}}
	signed := false
	for !r.done() {
		start := r.pos()
		typ, err := r.u8()
		if err != nil {
			return nil, fmt.Errorf("section at byte %d: %w", start, err)
		}
		body, err := r.str()
		if err != nil {
			return nil, fmt.Errorf("%s at byte %d: %w", sectionName(typ), start, err)
		}
		if typ == sectionSignature {
			err = parseSignature(body, r)
			signed = true
		} else if signed {
			err = errors.New("follows a signature section; signatures must come last")
		} else {
			err = p.section(typ, body)
		}
		if err != nil {
			return nil, fmt.Errorf("%s at byte %d: %w", sectionName(typ), start, err)
		}
	}
	p.finish(k)
	return k, nil
}

func parseHeader(r *decoder, k *List) error {
	version, err := r.u32()
	if err != nil {
		return err
	}
	if version != formatVersion {
		return fmt.Errorf("unsupported format version %d", version)
	}
	if k.Version, err = r.u64(); err != nil {
		return err
	}
	date, err := r.u64()
	if err != nil {
		return err
	}
	switch {
	case date > math.MaxInt64:
		return fmt.Errorf("generated date %d is out of range", date)
	case date > 0:
		k.GeneratedDate = time.Unix(int64(date), 0).UTC()
	}
	if _, err := r.u64(); err != nil { // flags: none defined, ignored as OpenSSH does
		return err
	}
	if _, err := r.str(); err != nil { // reserved
		return err
	}
	if k.Comment, err = r.cstr(); err != nil {
		return fmt.Errorf("comment: %w", err)
	}
	return nil
}

// parseSignature checks the structure of a signature section: the
// signing key (already read as body) and the signature that follows it. The
// signature itself is not verified.
func parseSignature(body, r *decoder) error {
	if _, err := ssh.ParsePublicKey(body.data); err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	if _, err := r.str(); err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	return nil
}

// parseExtension checks an extension (sub)section: name, critical flag
// and contents. jitssh knows no extensions, so only non-critical ones pass.
func parseExtension(r *decoder) error {
	name, err := r.cstr()
	if err != nil {
		return fmt.Errorf("name: %w", err)
	}
	critical, err := r.u8()
	if err != nil {
		return err
	}
	if _, err := r.str(); err != nil {
		return fmt.Errorf("extension %q: %w", name, err)
	}
	if !r.done() {
		return fmt.Errorf("extension %q: %d bytes of trailing data", name, len(r.data))
	}
	if critical != 0 {
		return fmt.Errorf("unsupported critical extension %q", name)
	}
	return nil
}

// parser accumulates sections; finish puts them in normal form.
type parser struct {
	sections map[string]*pending // by CA wire encoding
	keys     []ssh.PublicKey
	sha1s    [][]byte
	sha256s  [][]byte
}

type pending struct {
	ca     ssh.PublicKey
	serial []SerialRange
	ids    []string
}

func (p *parser) section(typ byte, body *decoder) error {
	switch typ {
	case sectionCertificates:
		return p.certSection(body)
	case sectionExplicitKey:
		for !body.done() {
			start := body.pos()
			blob, err := body.str()
			if err != nil {
				return err
			}
			key, err := ssh.ParsePublicKey(blob.data)
			if err != nil {
				return fmt.Errorf("key at byte %d: %w", start, err)
			}
			if _, ok := key.(*ssh.Certificate); ok {
				return fmt.Errorf("key at byte %d is a certificate, not a plain key", start)
			}
			p.keys = append(p.keys, key)
		}
	case sectionSHA1, sectionSHA256:
		size, list := sha1.Size, &p.sha1s
		if typ == sectionSHA256 {
			size, list = sha256.Size, &p.sha256s
		}
		for !body.done() {
			h, err := body.str()
			if err != nil {
				return err
			}
			if len(h.data) != size {
				return fmt.Errorf("hash at byte %d has %d bytes, want %d", h.base-4, len(h.data), size)
			}
			*list = append(*list, h.data)
		}
	case sectionExtension:
		return parseExtension(body)
	default:
		return errors.New("unknown section type")
	}
	return nil
}

func (p *parser) certSection(r *decoder) error {
	blob, err := r.str()
	if err != nil {
		return fmt.Errorf("CA key: %w", err)
	}
	if _, err := r.str(); err != nil {
		return fmt.Errorf("reserved field: %w", err)
	}
	var ca ssh.PublicKey
	if !blob.done() {
		if ca, err = ssh.ParsePublicKey(blob.data); err != nil {
			return fmt.Errorf("CA key: %w", err)
		}
		if _, ok := ca.(*ssh.Certificate); ok {
			return errors.New("CA key is a certificate")
		}
	}
	key := string(caWireBlob(ca))
	sec := p.sections[key]
	if sec == nil {
		sec = &pending{ca: ca}
		p.sections[key] = sec
	}
	for !r.done() {
		start := r.pos()
		typ, err := r.u8()
		if err != nil {
			return err
		}
		sub, err := r.str()
		if err == nil {
			err = sec.subsection(typ, sub)
		}
		if err != nil {
			return fmt.Errorf("%s at byte %d: %w", sectionName(typ), start, err)
		}
	}
	return nil
}

func (sec *pending) subsection(typ byte, r *decoder) error {
	switch typ {
	case certSerialList:
		if len(r.data)%8 != 0 {
			return fmt.Errorf("length %d is not a multiple of 8: %w", len(r.data), errTruncated)
		}
		sec.serial = slices.Grow(sec.serial, len(r.data)/8)
		for !r.done() {
			n, _ := r.u64()
			if n == 0 {
				return errors.New("serial 0 cannot be revoked")
			}
			sec.serial = append(sec.serial, SerialRange{n, n})
		}
	case certSerialRange:
		first, err := r.u64()
		if err != nil {
			return err
		}
		last, err := r.u64()
		if err != nil {
			return err
		}
		if first == 0 || first > last {
			return fmt.Errorf("range %d-%d: must be 1 <= first <= last", first, last)
		}
		sec.serial = append(sec.serial, SerialRange{first, last})
	case certSerialBitmap:
		return sec.bitmap(r)
	case certKeyID:
		for !r.done() {
			id, err := r.cstr()
			if err != nil {
				return err
			}
			sec.ids = append(sec.ids, id)
		}
	case certExtension:
		return parseExtension(r)
	default:
		return errors.New("unknown certificate subsection type")
	}
	if !r.done() {
		return fmt.Errorf("%d bytes of trailing data", len(r.data))
	}
	return nil
}

// bitmap decodes a serial bitmap: a uint64 offset and an mpint whose bit N
// revokes serial offset+N. Runs of set bits become ranges, so a dense
// bitmap costs little memory.
func (sec *pending) bitmap(r *decoder) error {
	offset, err := r.u64()
	if err != nil {
		return err
	}
	m, err := r.str()
	if err != nil {
		return err
	}
	if !r.done() {
		return fmt.Errorf("%d bytes of trailing data", len(r.data))
	}
	d := m.data
	// OpenSSH's mpint rules: no negative numbers, at most 2048 bytes of
	// magnitude (one more for a zero sign byte), leading zeros tolerated.
	if len(d) > 0 && d[0]&0x80 != 0 {
		return errors.New("bitmap is a negative mpint")
	}
	if len(d) > maxBitmapBytes+1 || (len(d) == maxBitmapBytes+1 && d[0] != 0) {
		return fmt.Errorf("bitmap of %d bytes exceeds the limit of %d", len(d), maxBitmapBytes)
	}
	for len(d) > 0 && d[0] == 0 {
		d = d[1:]
	}
	if len(d) == 0 {
		return nil
	}
	nbits := uint64(len(d)-1)*8 + uint64(bits.Len8(d[0]))
	if offset > math.MaxUint64-(nbits-1) {
		return fmt.Errorf("bitmap at offset %d with %d bits runs past the largest serial", offset, nbits)
	}
	if offset == 0 && d[len(d)-1]&1 != 0 {
		return errors.New("bitmap revokes serial 0")
	}
	runStart, inRun := uint64(0), false
	for i := uint64(0); i <= nbits; i++ {
		set := i < nbits && d[len(d)-1-int(i/8)]&(1<<(i%8)) != 0
		switch {
		case set && !inRun:
			runStart, inRun = i, true
		case !set && inRun:
			sec.serial = append(sec.serial, SerialRange{offset + runStart, offset + i - 1})
			inRun = false
		}
	}
	return nil
}

// finish moves the accumulated sections into k in normal form.
func (p *parser) finish(k *List) {
	for _, sec := range p.sections {
		s := &CertSection{CA: sec.ca}
		if len(sec.serial) > 0 {
			s.Serials, s.Ranges = normalize(sec.serial)
		}
		if len(sec.ids) > 0 {
			slices.Sort(sec.ids)
			s.KeyIDs = slices.Compact(sec.ids)
		}
		if len(sec.serial)+len(sec.ids) > 0 {
			k.Certs = append(k.Certs, s)
		}
	}
	slices.SortFunc(k.Certs, func(a, b *CertSection) int {
		return bytes.Compare(caWireBlob(a.CA), caWireBlob(b.CA))
	})
	if len(p.keys) > 0 {
		k.Keys = sortKeys(p.keys)
	}
	if len(p.sha1s) > 0 {
		k.SHA1s = sortBlobs(p.sha1s)
	}
	if len(p.sha256s) > 0 {
		k.SHA256s = sortBlobs(p.sha256s)
	}
}
