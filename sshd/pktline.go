package sshd

import (
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Git's pkt-line framing: a four-digit hex length that counts itself,
// then the payload. "0000" is a flush packet.
const (
	pktMaxPayload = 65516
	pktHeaderLen  = 4
)

var errFlush = errors.New("flush packet")

// readPkt reads one pkt-line. It returns errFlush for a flush packet.
func readPkt(r io.Reader) ([]byte, error) {
	var hdr [pktHeaderLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read pkt-line header: %w", err)
	}
	n, err := strconv.ParseUint(string(hdr[:]), 16, 16)
	if err != nil {
		return nil, fmt.Errorf("bad pkt-line length %q", hdr[:])
	}
	switch {
	case n == 0:
		return nil, errFlush
	case n < pktHeaderLen || n-pktHeaderLen > pktMaxPayload:
		return nil, fmt.Errorf("bad pkt-line length %d", n)
	}
	buf := make([]byte, n-pktHeaderLen)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read pkt-line payload: %w", err)
	}
	return buf, nil
}

// writePkt writes payload as one pkt-line.
func writePkt(w io.Writer, payload []byte) error {
	if len(payload) > pktMaxPayload {
		return fmt.Errorf("pkt-line payload of %d bytes is too long", len(payload))
	}
	buf := make([]byte, 0, pktHeaderLen+len(payload))
	buf = fmt.Appendf(buf, "%04x", pktHeaderLen+len(payload))
	buf = append(buf, payload...)
	_, err := w.Write(buf)
	return err
}

func writeFlush(w io.Writer) error {
	_, err := io.WriteString(w, "0000")
	return err
}
