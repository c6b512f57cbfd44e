package approvals

import (
	"context"
	"io"
)

// OperatorClient talks to one node's cluster listener as `jitssh operator`
// does: over the cluster's mutual TLS, with a node certificate, so only
// holders of one operate the cluster. Changes are made by the leader,
// whichever node is asked.
type OperatorClient struct {
	rpc  *rpcClient
	addr string
}

// DialOperator returns a client of the node cfg describes, using that
// node's own TLS identity.
func DialOperator(cfg *ClusterConfig) (*OperatorClient, error) {
	t, err := LoadClusterTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	return &OperatorClient{rpc: newRPCClient(nil, t), addr: cfg.AdvertiseAddr()}, nil
}

// Close closes the client's connections.
func (o *OperatorClient) Close() { o.rpc.close() }

// Addr is the address of the node the client talks to.
func (o *OperatorClient) Addr() string { return o.addr }

// Status returns the node's status.
func (o *OperatorClient) Status(ctx context.Context) (NodeStatus, error) {
	var st NodeStatus
	err := o.rpc.call(ctx, o.addr, rpcStatus, nil, &st)
	return st, err
}

// Members lists the cluster's members, each with its own status.
func (o *OperatorClient) Members(ctx context.Context) ([]Member, error) {
	var ms []Member
	err := o.rpc.call(ctx, o.addr, rpcMembers, nil, &ms)
	return ms, err
}

// Join adds the node listening at addr to the cluster.
func (o *OperatorClient) Join(ctx context.Context, addr string) error {
	return o.rpc.call(ctx, o.addr, rpcJoin, memberArgs{Addr: addr}, nil)
}

// Remove takes the member named id out of the cluster.
func (o *OperatorClient) Remove(ctx context.Context, id string) error {
	return o.rpc.call(ctx, o.addr, rpcRemove, memberArgs{ID: id}, nil)
}

// SnapshotSave writes a snapshot of the cluster's state to w.
func (o *OperatorClient) SnapshotSave(ctx context.Context, w io.Writer) (SnapshotInfo, error) {
	var info SnapshotInfo
	err := o.rpc.stream(ctx, o.addr, rpcSnapshotSave, nil, nil, w, &info)
	return info, err
}

// SnapshotRestore replaces the cluster's state with the snapshot read
// from r.
func (o *OperatorClient) SnapshotRestore(ctx context.Context, r io.Reader) (SnapshotInfo, error) {
	var info SnapshotInfo
	err := o.rpc.stream(ctx, o.addr, rpcSnapshotRestore, nil, r, nil, &info)
	return info, err
}
