package ca_test

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/jitssh/jitssh/ca"
)

func TestParseSourceAddress(t *testing.T) {
	tests := []struct {
		list    string
		allowed []string
		refused []string
		bad     string // the error names this, when the list is refused
	}{
		{list: "127.0.0.1", allowed: []string{"127.0.0.1", "::ffff:127.0.0.1"}, refused: []string{"127.0.0.2", "::1"}},
		{list: "10.0.0.0/8,192.168.1.0/24", allowed: []string{"10.255.0.1", "192.168.1.9"}, refused: []string{"192.168.2.1", "11.0.0.1"}},
		{list: "2001:db8::/32,::1", allowed: []string{"2001:db8::5", "::1"}, refused: []string{"2001:db9::1", "127.0.0.1"}},
		{list: "0.0.0.0/0", allowed: []string{"203.0.113.7"}, refused: []string{"::1"}},
		{list: "", bad: "empty entry"},
		{list: "10.0.0.0/8,", bad: "empty entry"},
		{list: ",", bad: "empty entry"},
		{list: "10.0.0.1/8", bad: "host bits set (want 10.0.0.0/8)"},
		{list: "10.0.0.0/33", bad: `"10.0.0.0/33" is not`},
		{list: "10.0.0.0/8, 127.0.0.1", bad: `" 127.0.0.1" is not`},
		{list: "fe80::1%eth0", bad: "zones are not allowed"},
		{list: "010.0.0.1", bad: `"010.0.0.1" is not`},
		{list: "10.0.0.*", bad: `"10.0.0.*" is not`},
		{list: "example.com", bad: `"example.com" is not`},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			got, err := ca.ParseSourceAddress(tt.list)
			if tt.bad != "" {
				require.ErrorIs(t, err, ca.ErrBadSourceAddress)
				require.ErrorContains(t, err, tt.bad)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			for _, a := range tt.allowed {
				require.True(t, got.Allows(netip.MustParseAddr(a)), "%s must be allowed by %q", a, tt.list)
			}
			for _, a := range tt.refused {
				require.False(t, got.Allows(netip.MustParseAddr(a)), "%s must be refused by %q", a, tt.list)
			}
		})
	}
}

// FuzzParseSourceAddress checks that an accepted list is one OpenSSH's
// grammar accepts too (only address characters, no empty entry) and that
// its canonical form parses to the same networks.
func FuzzParseSourceAddress(f *testing.F) {
	for _, seed := range []string{"127.0.0.1", "10.0.0.0/8,::1", "2001:db8::/32", "", ",", "10.0.0.1/8", "fe80::1%eth0"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, list string) {
		got, err := ca.ParseSourceAddress(list)
		if err != nil {
			if !errors.Is(err, ca.ErrBadSourceAddress) {
				t.Fatalf("error %v is not ErrBadSourceAddress", err)
			}
			return
		}
		if strings.Trim(list, "0123456789abcdefABCDEF.:/,") != "" {
			t.Fatalf("accepted %q, which has characters OpenSSH refuses", list)
		}
		canon := make([]string, len(got))
		for i, p := range got {
			canon[i] = p.String()
		}
		again, err := ca.ParseSourceAddress(strings.Join(canon, ","))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}
