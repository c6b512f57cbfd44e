package approvals

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// helloReply is what a node says about itself to one that is forming a
// cluster.
type helloReply struct {
	ID      string `json:"id"`
	Addr    string `json:"addr"`
	Servers int    `json:"servers"` // members in its raft configuration; 0 before it is in a cluster
	Leader  string `json:"leader,omitempty"`
}

func (s *Service) hello() helloReply {
	h := helloReply{ID: s.cluster.id, Addr: s.cluster.addr}
	if f := s.node.raft.GetConfiguration(); f.Error() == nil {
		h.Servers = len(f.Configuration().Servers)
	}
	addr, _ := s.node.raft.LeaderWithID()
	h.Leader = string(addr)
	return h
}

// Delays between attempts at founding or joining the cluster.
const (
	formRetryFirst = 50 * time.Millisecond
	formRetryMax   = 2 * time.Second
)

// formCluster makes a node that has no raft state a member: it asks the
// peers in Join; one already in a cluster is asked to add this node, and
// otherwise, with bootstrap_expect, the node founds the cluster once it
// knows enough voters. It tries until it is a member or the Service closes.
func (s *Service) formCluster() {
	c := s.cluster
	if s.node.existing || c.opts.BootstrapExpect == 1 && len(c.opts.Join) == 0 {
		return
	}
	delay := time.Duration(0)
	logged := ""
	for {
		done, err := s.formOnce()
		if done {
			return
		}
		if err != nil && err.Error() != logged {
			s.logger.Info("cluster not formed yet", "node", c.id, "reason", err.Error())
			logged = err.Error()
		}
		delay = min(max(2*delay, formRetryFirst), formRetryMax)
		select {
		case <-s.stop:
			return
		case <-time.After(delay):
		}
	}
}

// formOnce makes one attempt; done when the node is a member.
func (s *Service) formOnce() (done bool, err error) {
	c := s.cluster
	if f := s.node.raft.GetConfiguration(); f.Error() == nil && len(f.Configuration().Servers) > 0 {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	peers := s.helloAll(ctx, c.opts.Join)
	var errs []error
	for _, p := range peers {
		if p.err != nil {
			errs = append(errs, p.err)
			continue
		}
		if p.reply.Servers == 0 {
			continue
		}
		// The peer asks this node who it is, and has the leader add it.
		err := c.rpc.call(ctx, p.addr, rpcJoin, memberArgs{Addr: c.addr}, nil)
		if err == nil {
			s.logger.Info("joined the cluster", "node", c.id, "via", p.addr)
			return true, nil
		}
		errs = append(errs, err)
	}
	expect := c.opts.BootstrapExpect
	if expect == 0 {
		return false, errors.Join(append([]error{errors.New("no peer in join could add this node")}, errs...)...)
	}
	servers := []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(c.id), Address: raft.ServerAddress(c.addr)}}
	for _, p := range peers {
		if p.err != nil || p.reply.Servers > 0 {
			continue
		}
		if p.reply.ID == c.id {
			s.logger.Error("a peer has this node's name; node names must differ", "node", c.id, "peer", p.addr)
			continue
		}
		if slices.ContainsFunc(servers, func(sv raft.Server) bool { return string(sv.ID) == p.reply.ID }) {
			continue
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.reply.ID), Address: raft.ServerAddress(p.reply.Addr)})
	}
	if len(servers) < expect {
		return false, errors.Join(append([]error{errors.New("waiting for bootstrap_expect voters")}, errs...)...)
	}
	// Every founder sorts the same members the same way, so founders that
	// see each other found the same cluster.
	slices.SortFunc(servers, func(a, b raft.Server) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	err = s.node.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return false, err
	}
	s.logger.Info("founded the cluster", "node", c.id, "voters", serverIDs(servers))
	return true, nil
}

type helloResult struct {
	addr  string
	reply helloReply
	err   error
}

// helloAll asks every address who it is, all at once.
func (s *Service) helloAll(ctx context.Context, addrs []string) []helloResult {
	out := make([]helloResult, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].addr = addr
			out[i].err = s.cluster.rpc.call(ctx, addr, rpcHello, nil, &out[i].reply)
		}()
	}
	wg.Wait()
	return out
}
