package sshd

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// A push through the Git host proxy is checked before anything is sent
// upstream: its pack is copied to a private repository of its own, where
// git indexes it, and the proxy walks the objects it holds. The host's
// objects are never there, so what the walk cannot see (an object the pack
// refers to without carrying) is a boundary, and is judged as one.

// maxPushPack bounds one pushed pack.
const maxPushPack = 4 << 30

// maxPackObjects bounds the objects one pushed pack may announce.
const maxPackObjects = 1 << 26

var errBadPack = errors.New("bad pack")

// copyPack copies exactly one pack from r to w: its header, every entry
// (each zlib stream read to its end, which is the only way to find where
// an entry ends) and the trailing checksum. It returns the number of
// objects the pack holds. git checks the pack itself afterwards; this only
// frames it, so that nothing after the pack is taken for part of it.
func copyPack(r *bufio.Reader, w io.Writer, idLen int) (uint32, error) {
	t := &teeByteReader{r: r, w: bufio.NewWriterSize(w, 64<<10)}
	var hdr [12]byte
	if _, err := io.ReadFull(t, hdr[:]); err != nil {
		return 0, fmt.Errorf("%w: header: %w", errBadPack, err)
	}
	if string(hdr[:4]) != "PACK" {
		return 0, fmt.Errorf("%w: no PACK signature", errBadPack)
	}
	if v := binary.BigEndian.Uint32(hdr[4:8]); v != 2 && v != 3 {
		return 0, fmt.Errorf("%w: version %d", errBadPack, v)
	}
	n := binary.BigEndian.Uint32(hdr[8:12])
	if n > maxPackObjects {
		return 0, fmt.Errorf("%w: %d objects (at most %d)", errBadPack, n, maxPackObjects)
	}
	var z io.ReadCloser
	for i := uint32(0); i < n; i++ {
		typ, size, err := readEntryHeader(t)
		if err != nil {
			return 0, fmt.Errorf("%w: object %d: %w", errBadPack, i, err)
		}
		switch typ {
		case 1, 2, 3, 4: // commit, tree, blob, tag
		case 6: // ofs-delta: the base's offset
			if _, err := readOffset(t); err != nil {
				return 0, fmt.Errorf("%w: object %d: %w", errBadPack, i, err)
			}
		case 7: // ref-delta: the base's id
			if _, err := io.ReadFull(t, make([]byte, idLen/2)); err != nil {
				return 0, fmt.Errorf("%w: object %d: %w", errBadPack, i, err)
			}
		default:
			return 0, fmt.Errorf("%w: object %d has type %d", errBadPack, i, typ)
		}
		if z == nil {
			z, err = zlib.NewReader(t)
		} else {
			err = z.(zlib.Resetter).Reset(t, nil)
		}
		if err != nil {
			return 0, fmt.Errorf("%w: object %d: %w", errBadPack, i, err)
		}
		got, err := io.Copy(io.Discard, z)
		if err != nil {
			return 0, fmt.Errorf("%w: object %d: %w", errBadPack, i, err)
		}
		if uint64(got) != size {
			return 0, fmt.Errorf("%w: object %d inflates to %d bytes, not %d", errBadPack, i, got, size)
		}
		if t.n > maxPushPack {
			return 0, fmt.Errorf("%w: larger than %d bytes", errBadPack, maxPushPack)
		}
	}
	if _, err := io.ReadFull(t, make([]byte, idLen/2)); err != nil {
		return 0, fmt.Errorf("%w: checksum: %w", errBadPack, err)
	}
	if err := t.w.Flush(); err != nil {
		return 0, fmt.Errorf("write pack: %w", err)
	}
	return n, nil
}

// readEntryHeader reads a pack entry's type and inflated size.
func readEntryHeader(r io.ByteReader) (byte, uint64, error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, 0, err
	}
	typ := (c >> 4) & 7
	size := uint64(c & 15)
	shift := uint(4)
	for c&0x80 != 0 {
		if c, err = r.ReadByte(); err != nil {
			return 0, 0, err
		}
		if shift > 57 {
			return 0, 0, errors.New("size too large")
		}
		size |= uint64(c&0x7f) << shift
		shift += 7
	}
	return typ, size, nil
}

// readOffset reads an ofs-delta's base offset.
func readOffset(r io.ByteReader) (uint64, error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	off := uint64(c & 0x7f)
	for c&0x80 != 0 {
		if c, err = r.ReadByte(); err != nil {
			return 0, err
		}
		if off > 1<<56 {
			return 0, errors.New("offset too large")
		}
		off = ((off + 1) << 7) | uint64(c&0x7f)
	}
	return off, nil
}

// teeByteReader writes what is read from r to w. It reads byte by byte
// when asked to, so zlib never reads past the end of its stream.
type teeByteReader struct {
	r *bufio.Reader
	w *bufio.Writer
	n int64
}

func (t *teeByteReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.n += int64(n)
	if n > 0 {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			return n, werr
		}
	}
	return n, err
}

func (t *teeByteReader) ReadByte() (byte, error) {
	c, err := t.r.ReadByte()
	if err != nil {
		return 0, err
	}
	t.n++
	return c, t.w.WriteByte(c)
}

// objectStore is a private bare repository holding one pushed pack (and
// what the proxy fetched to check it), read through one git cat-file.
type objectStore struct {
	git, dir string
	batch    *exec.Cmd
	in       io.WriteCloser
	out      *bufio.Reader
	nodes    map[string]*objNode
}

// objNode is one object as the walk sees it: its type, whether the store
// holds it, and the objects it names.
type objNode struct {
	typ     string // "commit", "tree", "blob", "tag"; "" when missing
	present bool
	links   []objLink
}

type objLink struct {
	oid, typ string
	parent   bool // a commit's parent: ancestry, not content
}

// newObjectStore makes the private repository, in the host's object
// format.
func newObjectStore(ctx context.Context, git, objectFormat string) (*objectStore, error) {
	dir, err := os.MkdirTemp("", "jitssh-push-")
	if err != nil {
		return nil, fmt.Errorf("push check repository: %w", err)
	}
	s := &objectStore{git: git, dir: dir, nodes: map[string]*objNode{}}
	args := []string{"init", "--bare", "-q"}
	if objectFormat != "" {
		args = append(args, "--object-format="+objectFormat)
	}
	if err := s.run(ctx, nil, io.Discard, append(args, dir)...); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// run runs git in the store with stdin and stdout.
func (s *objectStore) run(ctx context.Context, stdin io.Reader, stdout io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, s.git, args...)
	cmd.Dir = s.dir
	cmd.Env = append(baseEnv(), "GIT_DIR="+s.dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	cmd.Stdin, cmd.Stdout = stdin, stdout
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("git %s: %w: %s", args[0], err, truncate(strings.TrimSpace(stderr.String())))
	}
	return nil
}

// addPack indexes a pack into the store, checking every object's form
// (not its links: the objects it links to are the host's).
func (s *objectStore) addPack(ctx context.Context, pack io.Reader) error {
	if err := s.run(ctx, pack, io.Discard, "index-pack", "--stdin", "--fsck-objects"); err != nil {
		return fmt.Errorf("%w: %w", errBadPack, err)
	}
	// What was missing may be here now; cat-file is started afresh so it
	// sees the new pack.
	for oid, n := range s.nodes {
		if !n.present {
			delete(s.nodes, oid)
		}
	}
	s.stopBatch()
	return nil
}

// objects lists every object the store holds.
func (s *objectStore) objects(ctx context.Context) (map[string]bool, error) {
	var out bytes.Buffer
	if err := s.run(ctx, nil, &out, "cat-file", "--batch-all-objects", "--batch-check=%(objectname)"); err != nil {
		return nil, err
	}
	all := map[string]bool{}
	for _, oid := range strings.Fields(out.String()) {
		all[oid] = true
	}
	return all, nil
}

// node returns what the store knows of oid, reading it once.
func (s *objectStore) node(oid string) (*objNode, error) {
	if n, ok := s.nodes[oid]; ok {
		return n, nil
	}
	if s.batch == nil {
		s.batch = exec.Command(s.git, "cat-file", "--batch")
		s.batch.Dir = s.dir
		s.batch.Env = append(baseEnv(), "GIT_DIR="+s.dir, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
		in, err := s.batch.StdinPipe()
		if err != nil {
			return nil, fmt.Errorf("git cat-file: %w", err)
		}
		out, err := s.batch.StdoutPipe()
		if err != nil {
			return nil, fmt.Errorf("git cat-file: %w", err)
		}
		if err := s.batch.Start(); err != nil {
			return nil, fmt.Errorf("git cat-file: %w", err)
		}
		s.in, s.out = in, bufio.NewReaderSize(out, 64<<10)
	}
	if _, err := io.WriteString(s.in, oid+"\n"); err != nil {
		return nil, fmt.Errorf("git cat-file: %w", err)
	}
	header, err := s.out.ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("git cat-file: %w", err)
	}
	f := strings.Fields(header)
	n := &objNode{}
	switch {
	case len(f) == 2 && f[1] == "missing":
	case len(f) == 3 && f[0] == oid:
		size, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || size < 0 {
			return nil, fmt.Errorf("git cat-file: bad header %q", truncate(header))
		}
		n.typ, n.present = f[1], true
		if n.typ == "blob" {
			// Content is not needed, only that it is here.
			if _, err := s.out.Discard(int(size) + 1); err != nil {
				return nil, fmt.Errorf("git cat-file: %w", err)
			}
			break
		}
		data := make([]byte, size+1)
		if _, err := io.ReadFull(s.out, data); err != nil {
			return nil, fmt.Errorf("git cat-file: %w", err)
		}
		if n.links, err = parseLinks(n.typ, data[:size], len(oid)); err != nil {
			return nil, fmt.Errorf("object %s: %w", oid, err)
		}
	default:
		return nil, fmt.Errorf("git cat-file: bad header %q", truncate(header))
	}
	s.nodes[oid] = n
	return n, nil
}

// parseLinks lists the objects a commit, tree or tag names. Submodule
// entries name commits of another repository and are not links.
func parseLinks(typ string, data []byte, idLen int) ([]objLink, error) {
	var links []objLink
	switch typ {
	case "commit", "tag":
		for _, line := range strings.Split(string(data), "\n") {
			if line == "" {
				break // the headers end at the first blank line
			}
			key, val, _ := strings.Cut(line, " ")
			switch {
			case typ == "commit" && key == "tree":
				links = append(links, objLink{oid: val, typ: "tree"})
			case typ == "commit" && key == "parent":
				links = append(links, objLink{oid: val, typ: "commit", parent: true})
			case typ == "tag" && key == "object":
				links = append(links, objLink{oid: val})
			case typ == "tag" && key == "type" && len(links) > 0:
				links[len(links)-1].typ = val
			}
		}
	case "tree":
		raw := idLen / 2
		for len(data) > 0 {
			sp := bytes.IndexByte(data, ' ')
			nul := bytes.IndexByte(data, 0)
			if sp < 0 || nul < sp || len(data) < nul+1+raw {
				return nil, errors.New("malformed tree")
			}
			mode := string(data[:sp])
			id := hex.EncodeToString(data[nul+1 : nul+1+raw])
			data = data[nul+1+raw:]
			switch mode {
			case "160000": // a submodule's commit
			case "40000":
				links = append(links, objLink{oid: id, typ: "tree"})
			default:
				links = append(links, objLink{oid: id, typ: "blob"})
			}
		}
	}
	return links, nil
}

// reach walks from tips through the objects the store holds (of those,
// only the ones in within, unless within is nil) and returns those it
// reached and the boundary: each object a reached object names that the
// walk may not enter, with the type it was named as. A tip outside is a
// boundary of type "".
func (s *objectStore) reach(tips []string, within map[string]bool) (map[string]bool, map[string]string, error) {
	reached := map[string]bool{}
	boundary := map[string]string{}
	queue := make([]objLink, 0, len(tips))
	for _, t := range tips {
		queue = append(queue, objLink{oid: t})
	}
	for len(queue) > 0 {
		l := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if reached[l.oid] {
			continue
		}
		if _, ok := boundary[l.oid]; ok {
			continue
		}
		n, err := s.node(l.oid)
		if err != nil {
			return nil, nil, err
		}
		if !n.present || (within != nil && !within[l.oid]) {
			boundary[l.oid] = l.typ
			continue
		}
		reached[l.oid] = true
		queue = append(queue, n.links...)
	}
	return reached, boundary, nil
}

// descends reports whether the store shows that commit old is new or one
// of its ancestors: walking new's parents (through a tag new names, if
// any) reaches old. Ancestry beyond the store's commits cannot be seen,
// so false means only "not shown".
func (s *objectStore) descends(new, old string) (bool, error) {
	seen := map[string]bool{}
	queue := []string{new}
	for len(queue) > 0 {
		oid := queue[len(queue)-1]
		queue = queue[:len(queue)-1]
		if oid == old {
			return true, nil
		}
		if seen[oid] {
			continue
		}
		seen[oid] = true
		n, err := s.node(oid)
		if err != nil {
			return false, err
		}
		for _, l := range n.links {
			if l.parent || (n.typ == "tag" && l.typ != "tree" && l.typ != "blob") {
				queue = append(queue, l.oid)
			}
		}
	}
	return false, nil
}

// packObjects writes a pack of exactly the objects oids (which the store
// holds) to w.
func (s *objectStore) packObjects(ctx context.Context, oids []string, w io.Writer) error {
	var list bytes.Buffer
	for _, oid := range oids {
		list.WriteString(oid + "\n")
	}
	return s.run(ctx, &list, w, "pack-objects", "--stdout", "-q")
}

// stopBatch ends cat-file, if it runs.
func (s *objectStore) stopBatch() {
	if s.batch != nil {
		s.in.Close()
		_ = s.batch.Wait()
		s.batch = nil
	}
}

// close ends cat-file and removes the repository.
func (s *objectStore) close() {
	s.stopBatch()
	os.RemoveAll(filepath.Clean(s.dir))
}
