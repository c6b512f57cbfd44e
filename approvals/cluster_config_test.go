package approvals

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clusterBlock is a valid cluster block for node2 of three.
const clusterBlock = `cluster:
  node_id: node2
  bind: 0.0.0.0:2201
  advertise: 10.0.0.2:2201
  bootstrap_expect: 3
  join: [10.0.0.1:2201, 10.0.0.3:2201]
  tls: {ca: tls/ca.pem, cert: tls/node2.pem, key: tls/node2-key.pem}
`

func TestLoadClusterConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.yaml")
	require.NoError(t, os.WriteFile(path, []byte(serverYAML+clusterBlock+withKeys(t, minimalPolicy)), 0o600))
	c, err := LoadConfig(path)
	require.NoError(t, err)
	require.NotNil(t, c.Cluster)
	assert.Equal(t, "node2", c.Cluster.NodeID)
	assert.Equal(t, "10.0.0.2:2201", c.Cluster.AdvertiseAddr())
	assert.Equal(t, []string{"10.0.0.1:2201", "10.0.0.3:2201"}, c.Cluster.Join)
	assert.Equal(t, filepath.Join(dir, "tls", "node2.pem"), c.Cluster.TLS.Cert, "relative to the file")

	p, err := NewPolicy(c)
	require.NoError(t, err)
	c.Cluster.Join[0] = "changed"
	assert.Equal(t, "10.0.0.1:2201", p.Config().Cluster.Join[0], "the policy keeps its own copy")

	noBlock, err := parseConfig("x.yaml", []byte(serverYAML+withKeys(t, minimalPolicy)))
	require.NoError(t, err)
	assert.Nil(t, noBlock.Cluster, "without the block the daemon runs on its own")
	other := *c
	other.Cluster = nil
	pOther, err := NewPolicy(&other)
	require.NoError(t, err)
	assert.Equal(t, p.Digest(), pOther.Digest(), "the cluster block is not policy: nodes differ in it")
}

func TestClusterConfigInvalid(t *testing.T) {
	tests := []struct {
		name, old, new string
		msg            string
		at             string
	}{
		{name: "no node_id", old: "  node_id: node2\n", new: "", msg: "cluster: node_id: missing"},
		{name: "bad node_id", old: "node_id: node2", new: "node_id: 'node 2'", msg: `cluster: node_id "node 2": use letters`, at: "node 2"},
		{name: "no bind", old: "  bind: 0.0.0.0:2201\n", new: "", msg: "cluster: bind: missing"},
		{name: "bad bind", old: "bind: 0.0.0.0:2201", new: "bind: somewhere", msg: `cluster: bind: "somewhere": want host:port`, at: "somewhere"},
		{name: "unspecified advertise", old: "  advertise: 10.0.0.2:2201\n", new: "",
			msg: `cluster: advertise: "0.0.0.0:2201" is not an address peers can dial`},
		{name: "negative expect", old: "bootstrap_expect: 3", new: "bootstrap_expect: -1", msg: "bootstrap_expect: -1 is negative"},
		{name: "expect beyond join", old: "bootstrap_expect: 3", new: "bootstrap_expect: 5",
			msg: "bootstrap_expect: 5 voters, but join lists only 2 peers besides this node"},
		{name: "expect too large", old: "bootstrap_expect: 3", new: "bootstrap_expect: 11", msg: "at most 9 voters"},
		{name: "neither", old: "  bootstrap_expect: 3\n  join: [10.0.0.1:2201, 10.0.0.3:2201]\n", new: "",
			msg: "neither bootstrap_expect nor join"},
		{name: "join twice", old: "10.0.0.3:2201]", new: "10.0.0.1:2201]", msg: "join[1]: 10.0.0.1:2201 listed twice"},
		{name: "join self", old: "10.0.0.3:2201]", new: "10.0.0.2:2201]", msg: "join[1]: 10.0.0.2:2201 is this node's own address"},
		{name: "join not an address", old: "10.0.0.3:2201]", new: "node3]", msg: `join[1]: "node3": want host:port`},
		{name: "no tls key", old: ", key: tls/node2-key.pem}", new: "}", msg: "cluster: tls: key: missing"},
		{name: "unknown field", old: "  bind:", new: "  port: 1\n  bind:", msg: "field port not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			block := strings.Replace(clusterBlock, tt.old, tt.new, 1)
			require.NotEqual(t, clusterBlock, block, "the replacement must change the block")
			yml := serverYAML + block + withKeys(t, minimalPolicy)
			_, err := parseConfig("test.yaml", []byte(yml))
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.msg)
			var ce *ConfigError
			if tt.at == "" || !errors.As(err, &ce) {
				return
			}
			want := 0
			for i, line := range strings.Split(yml, "\n") {
				if strings.Contains(line, tt.at) {
					want = i + 1
					break
				}
			}
			assert.Equal(t, want, ce.Problems[0].Line, err.Error())
		})
	}
}
