package approvals

import (
	"net"
	"path/filepath"
	"slices"
)

// ClusterConfig is the `cluster:` block of the daemon's config file. Without
// it the daemon is one node on its own, as it always was; with it, the node
// is one voter of a raft cluster whose members talk over mutual TLS at Bind.
type ClusterConfig struct {
	// NodeID names this node in the cluster, forever: raft knows a member
	// by it, and a member whose ID changes is a new member.
	NodeID string `yaml:"node_id" json:"node_id"`
	// Bind is where the node listens for its peers (raft and forwarded
	// writes) and for `jitssh operator`.
	Bind string `yaml:"bind" json:"bind"`
	// Advertise is the address peers dial; Bind when empty.
	Advertise string `yaml:"advertise" json:"advertise,omitempty"`
	// BootstrapExpect, when set, lets a node with no raft state found a new
	// cluster once it knows this many voters, itself and the peers in Join
	// included. Every founding node computes the same membership from what
	// the others report, so founding twice gives the same cluster.
	BootstrapExpect int `yaml:"bootstrap_expect" json:"bootstrap_expect,omitempty"`
	// Join lists peers to ask for membership (or, with BootstrapExpect, to
	// found the cluster with).
	Join []string `yaml:"join" json:"join,omitempty"`
	// TLS names the cluster CA and this node's certificate. Every
	// connection between nodes is mutual TLS with certificates of this CA.
	TLS ClusterTLSFiles `yaml:"tls" json:"tls"`
}

// ClusterTLSFiles are the PEM files of a node's cluster TLS identity.
type ClusterTLSFiles struct {
	CA   string `yaml:"ca" json:"ca"`     // the cluster CA certificate
	Cert string `yaml:"cert" json:"cert"` // this node's certificate, signed by CA
	Key  string `yaml:"key" json:"key"`   // this node's private key
}

// AdvertiseAddr returns the address peers dial.
func (c *ClusterConfig) AdvertiseAddr() string {
	if c.Advertise != "" {
		return c.Advertise
	}
	return c.Bind
}

// resolvePaths makes the TLS file names relative to dir absolute.
func (c *ClusterConfig) resolvePaths(dir string) {
	for _, p := range []*string{&c.TLS.CA, &c.TLS.Cert, &c.TLS.Key} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

func cloneCluster(c *ClusterConfig) *ClusterConfig {
	if c == nil {
		return nil
	}
	out := *c
	out.Join = slices.Clone(c.Join)
	return &out
}

// maxClusterSize bounds bootstrap_expect: raft clusters beyond a handful of
// voters only get slower, and an even count tolerates no more failures than
// the odd count below it.
const maxClusterSize = 9

// cluster checks the cluster block, when there is one.
func (c *checker) cluster(cfg *Config) {
	cl := cfg.Cluster
	if cl == nil {
		return
	}
	switch {
	case cl.NodeID == "":
		c.bad(at("cluster"), "cluster: node_id: missing (a name for this node that never changes, e.g. node1)")
	case !nameRE().MatchString(cl.NodeID):
		c.bad(at("cluster", "node_id"), "cluster: node_id %q: use letters, digits, '.', '_' and '-' (at most 64)", cl.NodeID)
	}
	if cl.Bind == "" {
		c.bad(at("cluster"), "cluster: bind: missing (the address peers connect to, e.g. 10.0.0.1:2201)")
	} else if err := checkAddr(cl.Bind); err != nil {
		c.bad(at("cluster", "bind"), "cluster: bind: %v", err)
	}
	if cl.Advertise != "" {
		if err := checkAddr(cl.Advertise); err != nil {
			c.bad(at("cluster", "advertise"), "cluster: advertise: %v", err)
		}
	}
	if adv := cl.AdvertiseAddr(); checkAddr(adv) == nil {
		host, _, _ := net.SplitHostPort(adv)
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			c.bad(at("cluster", "advertise"), "cluster: advertise: %q is not an address peers can dial; set advertise to this node's address", adv)
		}
	}
	switch {
	case cl.BootstrapExpect < 0:
		c.bad(at("cluster", "bootstrap_expect"), "cluster: bootstrap_expect: %d is negative", cl.BootstrapExpect)
	case cl.BootstrapExpect > maxClusterSize:
		c.bad(at("cluster", "bootstrap_expect"), "cluster: bootstrap_expect: %d; at most %d voters", cl.BootstrapExpect, maxClusterSize)
	case cl.BootstrapExpect > len(cl.Join)+1:
		c.bad(at("cluster", "bootstrap_expect"), "cluster: bootstrap_expect: %d voters, but join lists only %d %s besides this node",
			cl.BootstrapExpect, len(cl.Join), plural(len(cl.Join), "peer", "peers"))
	case cl.BootstrapExpect == 0 && len(cl.Join) == 0:
		c.bad(at("cluster"), "cluster: neither bootstrap_expect nor join: the node could neither found a cluster nor join one")
	}
	seen := map[string]bool{}
	for i, addr := range cl.Join {
		switch {
		case checkAddr(addr) != nil:
			c.bad(at("cluster", "join", i), "cluster: join[%d]: %v", i, checkAddr(addr))
		case seen[addr]:
			c.bad(at("cluster", "join", i), "cluster: join[%d]: %s listed twice", i, addr)
		case addr == cl.AdvertiseAddr():
			c.bad(at("cluster", "join", i), "cluster: join[%d]: %s is this node's own address", i, addr)
		}
		seen[addr] = true
	}
	for _, f := range []struct{ key, val string }{{"ca", cl.TLS.CA}, {"cert", cl.TLS.Cert}, {"key", cl.TLS.Key}} {
		if f.val == "" {
			c.bad(at("cluster", "tls"), "cluster: tls: %s: missing (see jitssh operator tls init)", f.key)
		}
	}
}
