package sshd

import (
	"bytes"
	"errors"
	"testing"
)

func TestPktLine(t *testing.T) {
	var b bytes.Buffer
	for _, p := range []string{"hello\n", "", "x"} {
		if err := writePkt(&b, []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeFlush(&b); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "000ahello\n00040005x0000"; got != want {
		t.Fatalf("encoded %q, want %q", got, want)
	}
	for _, want := range []string{"hello\n", "", "x"} {
		got, err := readPkt(&b)
		if err != nil || string(got) != want {
			t.Fatalf("readPkt = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := readPkt(&b); !errors.Is(err, errFlush) {
		t.Fatalf("readPkt at flush = %v, want errFlush", err)
	}
	for _, bad := range []string{"000", "zzzz", "0001", "0003", "fff0" + "short", "0009abc"} {
		if _, err := readPkt(bytes.NewReader([]byte(bad))); err == nil || errors.Is(err, errFlush) {
			t.Errorf("readPkt(%q) = %v, want an error", bad, err)
		}
	}
	if err := writePkt(&b, make([]byte, pktMaxPayload+1)); err == nil {
		t.Error("writePkt accepted an oversized payload")
	}
}

func FuzzReadPkt(f *testing.F) {
	for _, s := range []string{"000ahello\n", "0000", "0004", "ffff", "0005"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		for {
			p, err := readPkt(r)
			if err != nil {
				return
			}
			if len(p) > pktMaxPayload {
				t.Fatalf("payload of %d bytes", len(p))
			}
		}
	})
}

func FuzzArchiveArgs(f *testing.F) {
	for _, s := range []string{"0012argument main\n0000", "0019argument --prefix=x/\n0000", "0000"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		args, err := readArchiveArgs(bytes.NewReader(data))
		if err == nil && len(args) > maxArchiveArgs {
			t.Fatalf("%d arguments accepted", len(args))
		}
	})
}
