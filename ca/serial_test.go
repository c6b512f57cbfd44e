package ca_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/ca"
)

func TestSerialFileSequence(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial")
	s, err := ca.OpenSerialFile(path)
	require.NoError(t, err)
	_, err = os.Stat(path)
	require.ErrorIs(t, err, fs.ErrNotExist, "opening writes nothing")

	for want := uint64(1); want <= 3; want++ {
		got, err := s.NextSerial()
		require.NoError(t, err)
		assert.Equal(t, ca.BreakGlassBit|want, got)
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "3\n", string(data))
	assertMode(t, path, 0o600)

	// A new SerialFile, as in the next process, goes on from the file.
	again, err := ca.OpenSerialFile(path)
	require.NoError(t, err)
	got, err := again.NextSerial()
	require.NoError(t, err)
	assert.Equal(t, ca.BreakGlassBit|4, got)

	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.ElementsMatch(t, []string{"serial", "serial.lock"}, names, "no temporary files left behind")
}

func TestSerialFileRefusesDamage(t *testing.T) {
	for _, content := range []string{
		"",
		"\n",
		"abc\n",
		"-1\n",
		"1\n2\n",
		" 5\n",
		"0x10\n",
		"9223372036854775808\n", // 2^63: would collide with the bit
		"18446744073709551616\n",
	} {
		t.Run(strconv.Quote(content), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "serial")
			require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
			_, err := ca.OpenSerialFile(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), path)

			// Damage after opening is caught by NextSerial too, and the file
			// is left as it was for someone to look at.
			require.NoError(t, os.WriteFile(path, []byte("1\n"), 0o600))
			s, err := ca.OpenSerialFile(path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
			_, err = s.NextSerial()
			require.Error(t, err)
			data, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, content, string(data))
		})
	}
}

func TestSerialFileExhausted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial")
	require.NoError(t, os.WriteFile(path, []byte("9223372036854775806\n"), 0o600))
	s, err := ca.OpenSerialFile(path)
	require.NoError(t, err)
	got, err := s.NextSerial()
	require.NoError(t, err)
	assert.Equal(t, ^uint64(0), got, "the last serial")
	_, err = s.NextSerial()
	require.ErrorIs(t, err, ca.ErrSerialsExhausted)
}

func TestSerialFileMissingDirectory(t *testing.T) {
	s, err := ca.OpenSerialFile(filepath.Join(t.TempDir(), "gone", "serial"))
	require.NoError(t, err)
	_, err = s.NextSerial()
	require.ErrorIs(t, err, fs.ErrNotExist)
}

// serialChildEnv, when set, turns TestSerialFileChild into a process that
// draws serials from the file it names and prints them.
const serialChildEnv = "JITSSH_TEST_SERIAL_FILE"

const serialsPerConsumer = 20

func TestSerialFileChild(t *testing.T) {
	path := os.Getenv(serialChildEnv)
	if path == "" {
		t.Skip("runs only as a child of TestSerialFileAcrossProcesses")
	}
	s, err := ca.OpenSerialFile(path)
	require.NoError(t, err)
	for range serialsPerConsumer {
		n, err := s.NextSerial()
		require.NoError(t, err)
		fmt.Printf("serial %d\n", n)
	}
}

func TestSerialFileAcrossProcesses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "serial")
	const goroutines, processes = 4, 2

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs [][]uint64
	)
	record := func(seq []uint64) {
		mu.Lock()
		defer mu.Unlock()
		seqs = append(seqs, seq)
	}
	for range processes {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSerialFileChild$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), serialChildEnv+"="+path)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		wg.Go(func() {
			err := cmd.Wait()
			if !assert.NoError(t, err, "child:\n%s", out.String()) {
				return
			}
			var seq []uint64
			sc := bufio.NewScanner(&out)
			for sc.Scan() {
				if v, ok := strings.CutPrefix(sc.Text(), "serial "); ok {
					n, err := strconv.ParseUint(v, 10, 64)
					if assert.NoError(t, err) {
						seq = append(seq, n)
					}
				}
			}
			record(seq)
		})
	}
	s, err := ca.OpenSerialFile(path)
	require.NoError(t, err)
	for range goroutines {
		wg.Go(func() {
			var seq []uint64
			for range serialsPerConsumer {
				n, err := s.NextSerial()
				if !assert.NoError(t, err) {
					return
				}
				seq = append(seq, n)
			}
			record(seq)
		})
	}
	wg.Wait()

	require.Len(t, seqs, goroutines+processes)
	seen := map[uint64]bool{}
	for _, seq := range seqs {
		require.Len(t, seq, serialsPerConsumer)
		for i, n := range seq {
			assert.False(t, seen[n], "serial %#x handed out twice", n)
			seen[n] = true
			if i > 0 {
				assert.Greater(t, n, seq[i-1], "each consumer sees increasing serials")
			}
		}
	}
	// Together they used exactly the serials 1..total, none skipped.
	total := uint64((goroutines + processes) * serialsPerConsumer)
	for n := uint64(1); n <= total; n++ {
		assert.True(t, seen[ca.BreakGlassBit|n], "serial %d missing", n)
	}
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, strconv.FormatUint(total, 10)+"\n", string(data))
}
