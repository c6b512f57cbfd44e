package sshd

import (
	"bytes"
	"io"
	"strconv"
	"strings"
)

// git refuses an update of a ref hidden from the pusher itself, before
// jitssh's hooks see it, and says only this. A ref is hidden when the
// grants do not let the pusher read it, so the client learns nothing from
// git's words but that something was refused.
const (
	gitHiddenUpdate = "deny updating a hidden ref"
	gitHiddenDelete = "deny deleting a hidden ref"
)

// hiddenReport passes receive-pack's output to the client, rewriting the
// reason git gives for a hidden ref in its report ("ng REF deny updating
// a hidden ref") into jitssh's: what the update needed and that the grant
// does not cover the ref. Everything else passes byte for byte. The
// report comes after the ref advertisement, either as pkt-lines of its own
// or, with a side band, as data on band 1 whose packets need not line up
// with the report's lines; band 2 and 3 pass untouched.
//
// reason is asked for the new reason; it must be worded from what the
// client sent and its grants alone, so that a hidden ref that exists and
// one that does not read the same. Malformed output is passed on as it is
// from there on.
type hiddenReport struct {
	w      io.Writer
	reason func(ref string, deleting bool) string

	state    int
	sideband int // 0: not known yet, 1: with a side band, -1: without
	buf      []byte
	band1    []byte // side-band data that is not yet a whole report line
	band1Raw bool   // side band 1 turned out not to carry pkt-lines
}

const (
	hiddenReportAdvert = iota
	hiddenReportReport
	hiddenReportPass
)

// sideBandMax is the data a rewritten band-1 packet carries at most: small
// enough for the old side-band's 1000-byte packets too.
const sideBandMax = 1000 - pktHeaderLen - 1

func (h *hiddenReport) Write(p []byte) (int, error) {
	if h.state == hiddenReportPass {
		return h.w.Write(p)
	}
	h.buf = append(h.buf, p...)
	var out bytes.Buffer
	for h.state != hiddenReportPass {
		size, ok := pktSize(h.buf)
		if !ok {
			break
		}
		if size < 0 {
			h.state = hiddenReportPass
			break
		}
		raw := h.buf[:size]
		h.buf = h.buf[size:]
		h.packet(&out, raw)
	}
	if h.state == hiddenReportPass {
		h.flushBand1(&out)
		out.Write(h.buf)
		h.buf = nil
	}
	if out.Len() > 0 {
		if _, err := h.w.Write(out.Bytes()); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// packet handles one whole packet of receive-pack's output.
func (h *hiddenReport) packet(out *bytes.Buffer, raw []byte) {
	payload := raw[pktHeaderLen:]
	flush := len(raw) == pktHeaderLen && string(raw) == "0000"
	switch {
	case h.state == hiddenReportAdvert:
		out.Write(raw)
		if flush {
			h.state = hiddenReportReport
		}
		return
	case flush:
		// The end of the report, or of the side band that carried it.
		h.flushBand1(out)
		out.Write(raw)
		h.state = hiddenReportPass
		return
	}
	if h.sideband == 0 {
		h.sideband = -1
		if len(payload) > 0 && payload[0] >= 1 && payload[0] <= 3 {
			h.sideband = 1
		}
	}
	if h.sideband < 0 {
		out.Write(h.rewrite(raw))
		return
	}
	if len(payload) == 0 || payload[0] != 1 || h.band1Raw {
		out.Write(raw)
		return
	}
	h.band1 = append(h.band1, payload[1:]...)
	var data []byte
	for {
		size, ok := pktSize(h.band1)
		if !ok {
			break
		}
		if size < 0 {
			// Not a report after all: pass what there is, and the
			// rest as it comes.
			data = append(data, h.band1...)
			h.band1, h.band1Raw = nil, true
			break
		}
		line := h.band1[:size]
		h.band1 = h.band1[size:]
		data = append(data, h.rewrite(line)...)
	}
	if len(data) == 0 {
		// A keepalive, or part of a line: nothing to say yet, but a
		// keepalive must still reach the client.
		if len(payload) == 1 {
			out.Write(raw)
		}
		return
	}
	writeBand1(out, data)
}

// flushBand1 passes on side-band data that never made a whole line.
func (h *hiddenReport) flushBand1(out *bytes.Buffer) {
	if len(h.band1) > 0 {
		writeBand1(out, h.band1)
		h.band1 = nil
	}
}

// rewrite is one report line, a whole packet, with jitssh's reason for a
// hidden ref, or as it was.
func (h *hiddenReport) rewrite(raw []byte) []byte {
	rest, ok := bytes.CutPrefix(raw[pktHeaderLen:], []byte("ng "))
	if !ok {
		return raw
	}
	text := strings.TrimSuffix(string(rest), "\n")
	ref, why, ok := strings.Cut(text, " ")
	if !ok || (why != gitHiddenUpdate && why != gitHiddenDelete) {
		return raw
	}
	reason := h.reason(ref, why == gitHiddenDelete)
	if reason == "" || strings.ContainsAny(reason, "\n\x00") {
		return raw
	}
	return pktOf([]byte("ng " + ref + " " + reason + "\n"))
}

// pktSize is the size of the whole packet at the start of b, false when
// it has not all arrived, or -1 when b does not start with one.
func pktSize(b []byte) (int, bool) {
	if len(b) < pktHeaderLen {
		return 0, false
	}
	n, err := strconv.ParseUint(string(b[:pktHeaderLen]), 16, 16)
	switch {
	case err != nil, n != 0 && n < pktHeaderLen:
		return -1, true
	case n == 0:
		return pktHeaderLen, true
	case len(b) < int(n):
		return 0, false
	}
	return int(n), true
}

func pktOf(payload []byte) []byte {
	var b bytes.Buffer
	_ = writePkt(&b, payload)
	return b.Bytes()
}

func writeBand1(out *bytes.Buffer, data []byte) {
	for len(data) > 0 {
		n := min(len(data), sideBandMax)
		out.Write(pktOf(append([]byte{1}, data[:n]...)))
		data = data[n:]
	}
}

// flush passes on whatever is left unparsed once receive-pack has ended.
func (h *hiddenReport) flush() error {
	var out bytes.Buffer
	h.flushBand1(&out)
	out.Write(h.buf)
	h.buf = nil
	h.state = hiddenReportPass
	if out.Len() == 0 {
		return nil
	}
	_, err := h.w.Write(out.Bytes())
	return err
}
