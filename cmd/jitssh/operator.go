package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/internal/atomicfile"
)

// operatorTimeout bounds one operator call; a restore may take longer.
const (
	operatorTimeout        = 30 * time.Second
	operatorRestoreTimeout = 5 * time.Minute
)

func operatorCommand() *cli.Command {
	return &cli.Command{
		Name:  "operator",
		Usage: "run an approval daemon cluster",
		Description: "tls makes the cluster's CA and node certificates. The other commands talk to the\n" +
			"node that --config describes, over the cluster's mutual TLS with that node's own\n" +
			"certificate: only holders of a node certificate operate the cluster. Membership\n" +
			"changes and restores are made by the leader, whichever node is asked.",
		Subcommands: []*cli.Command{
			operatorTLSCommand(),
			operatorMembersCommand(),
			operatorJoinCommand(),
			operatorRemoveCommand(),
			operatorSnapshotCommand(),
		},
		Action: commandGroup("operator"),
	}
}

func operatorConfigFlag() *cli.StringFlag {
	return &cli.StringFlag{
		Name:      "config",
		Usage:     "the node's daemon config, with its cluster block (required)",
		EnvVars:   []string{"JITSSH_SERVER_CONFIG"},
		TakesFile: true,
	}
}

func operatorTLSCommand() *cli.Command {
	hostFlag := &cli.StringSliceFlag{
		Name:  "host",
		Usage: "a name or address peers reach the nodes at, added to each certificate (repeat)",
	}
	dirFlag := &cli.StringFlag{Name: "dir", Usage: "directory of the cluster CA (required)", TakesFile: true}
	return &cli.Command{
		Name:  "tls",
		Usage: "make the cluster's TLS CA and node certificates",
		Subcommands: []*cli.Command{
			{
				Name:      "init",
				Usage:     "make a cluster CA and a certificate for each node",
				UsageText: "jitssh operator tls init --dir DIR --nodes N [--host HOST]...",
				Description: "Writes DIR/ca.pem and DIR/ca-key.pem (the cluster CA; keep its key off the\n" +
					"nodes once all certificates are made), and for each node K of N DIR/nodeK.pem and\n" +
					"DIR/nodeK-key.pem (mode 0600): the node's name is nodeK. An existing CA is never\n" +
					"overwritten.",
				Flags: []cli.Flag{dirFlag, &cli.IntFlag{Name: "nodes", Usage: "how many node certificates", Value: 3}, hostFlag},
				Action: cliAction(func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					dir, err := requiredString(c, "dir")
					if err != nil {
						return err
					}
					n := c.Int("nodes")
					if n < 1 || n > 9 {
						return usageError("--nodes %d: want 1 to 9", n)
					}
					if err := approvals.InitClusterTLS(dir, n, c.StringSlice("host"), time.Now()); err != nil {
						return err
					}
					fmt.Fprintf(c.App.Writer, "cluster CA and %d node certificates in %s\n", n, dir)
					return nil
				}),
			},
			{
				Name:      "cert",
				Usage:     "make one more node certificate with an existing cluster CA",
				UsageText: "jitssh operator tls cert --dir DIR --id NAME [--host HOST]...",
				Flags:     []cli.Flag{dirFlag, &cli.StringFlag{Name: "id", Usage: "the node's name (required)"}, hostFlag},
				Action: cliAction(func(c *cli.Context) error {
					if err := noArgs(c); err != nil {
						return err
					}
					dir, err := requiredString(c, "dir")
					if err != nil {
						return err
					}
					id, err := requiredString(c, "id")
					if err != nil {
						return err
					}
					if err := approvals.IssueNodeFiles(dir, id, c.StringSlice("host"), time.Now()); err != nil {
						return err
					}
					cert, key := approvals.ClusterNodeFiles(dir, id)
					fmt.Fprintf(c.App.Writer, "%s\n%s\n", cert, key)
					return nil
				}),
			},
		},
		Action: commandGroup("operator tls"),
	}
}

// operatorClient loads the config named by --config and returns a client
// of that node.
func operatorClient(c *cli.Context) (*approvals.OperatorClient, error) {
	path, err := requiredString(c, "config")
	if err != nil {
		return nil, err
	}
	cfg, err := approvals.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	if cfg.Cluster == nil {
		return nil, fmt.Errorf("%s has no cluster block: the daemon runs on its own and has no cluster to operate", path)
	}
	return approvals.DialOperator(cfg.Cluster)
}

// withOperator runs fn with a client of the node and a bounded context.
func withOperator(c *cli.Context, timeout time.Duration, fn func(ctx context.Context, o *approvals.OperatorClient) error) error {
	o, err := operatorClient(c)
	if err != nil {
		return err
	}
	defer o.Close()
	ctx, cancel := context.WithTimeout(c.Context, timeout)
	defer cancel()
	return fn(ctx, o)
}

func operatorMembersCommand() *cli.Command {
	return &cli.Command{
		Name:      "members",
		Usage:     "list the cluster's members and their health",
		UsageText: "jitssh operator members --config FILE [--json]",
		Description: "Each member is asked for its own status. HEALTHY means it answered, knows the\n" +
			"leader, heard from it lately, and takes writes; PROBLEMS says what is wrong otherwise.",
		Flags: []cli.Flag{operatorConfigFlag(), jsonFlag("JITSSH_OPERATOR_JSON")},
		Action: cliAction(func(c *cli.Context) error {
			if err := noArgs(c); err != nil {
				return err
			}
			return withOperator(c, operatorTimeout, func(ctx context.Context, o *approvals.OperatorClient) error {
				ms, err := o.Members(ctx)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					return writeJSON(c.App.Writer, ms)
				}
				return printMembers(c.App.Writer, ms, time.Now())
			})
		}),
	}
}

func printMembers(w io.Writer, ms []approvals.Member, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tADDRESS\tROLE\tLEADER\tHEALTHY\tLAST CONTACT\tAPPLIED\tPROBLEMS")
	for _, m := range ms {
		role := "voter"
		if !m.Voter {
			role = "nonvoter"
		}
		leader, contact, applied, problems := "", "-", "-", m.Error
		if m.Leader {
			leader = "leader"
		}
		if st := m.Status; st != nil {
			applied = strconv.FormatUint(st.AppliedIndex, 10)
			if !m.Leader && !st.LastContact.IsZero() {
				contact = now.Sub(st.LastContact).Round(time.Millisecond).String() + " ago"
			}
			if len(st.Problems) > 0 {
				problems = st.Problems[0]
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\t%s\t%s\n", m.ID, m.Address, role, leader, m.Healthy, contact, applied, oneLine(problems))
	}
	return tw.Flush()
}

func operatorJoinCommand() *cli.Command {
	return &cli.Command{
		Name:      "join",
		Usage:     "add the node listening at ADDR to the cluster as a voter",
		UsageText: "jitssh operator join --config FILE ADDR",
		Flags:     []cli.Flag{operatorConfigFlag()},
		Action: cliAction(func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("join needs one argument: the new node's cluster address (host:port)")
			}
			addr := c.Args().First()
			return withOperator(c, operatorTimeout, func(ctx context.Context, o *approvals.OperatorClient) error {
				if err := o.Join(ctx, addr); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s joined\n", addr)
				return nil
			})
		}),
	}
}

func operatorRemoveCommand() *cli.Command {
	return &cli.Command{
		Name:      "remove",
		Usage:     "take the member named ID out of the cluster",
		UsageText: "jitssh operator remove --config FILE ID",
		Description: "The removed node keeps its data but takes no part until it is joined again.\n" +
			"Removing a member of three leaves two, which tolerate no failure: add another soon.",
		Flags: []cli.Flag{operatorConfigFlag()},
		Action: cliAction(func(c *cli.Context) error {
			if c.NArg() != 1 {
				return usageError("remove needs one argument: the member's node_id")
			}
			id := c.Args().First()
			return withOperator(c, operatorTimeout, func(ctx context.Context, o *approvals.OperatorClient) error {
				if err := o.Remove(ctx, id); err != nil {
					return err
				}
				fmt.Fprintf(c.App.Writer, "%s removed\n", id)
				return nil
			})
		}),
	}
}

func operatorSnapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "save the cluster's state to a file, or restore it from one",
		Subcommands: []*cli.Command{
			{
				Name:      "save",
				Usage:     "write a snapshot of the cluster's state to FILE",
				UsageText: "jitssh operator snapshot save --config FILE SNAPSHOT",
				Description: "The snapshot is as new as the cluster's state when the command runs, whichever\n" +
					"node is asked. It holds every request, including certificates: keep it like the\n" +
					"data directory (it is written with mode 0600).",
				Flags: []cli.Flag{operatorConfigFlag()},
				Action: cliAction(func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("snapshot save needs one argument: the file to write")
					}
					path := c.Args().First()
					return withOperator(c, operatorTimeout, func(ctx context.Context, o *approvals.OperatorClient) error {
						var buf bytes.Buffer
						info, err := o.SnapshotSave(ctx, &buf)
						if err != nil {
							return err
						}
						if err := atomicfile.WriteFile(path, buf.Bytes(), 0o600); err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "saved %d requests at raft index %d, last serial %d, audit entry %d, to %s\n",
							info.Requests, info.Index, info.LastSerial, info.Audit.Seq, path)
						return nil
					})
				}),
			},
			{
				Name:      "restore",
				Usage:     "replace the cluster's state with the snapshot in FILE",
				UsageText: "jitssh operator snapshot restore --config FILE SNAPSHOT",
				Description: "For disaster recovery, into a fresh cluster. Every request of the snapshot\n" +
					"replaces the cluster's; the cluster keeps its own audit logs, which record the\n" +
					"restore, and its policy. Serials move to a new epoch, above anything the cluster\n" +
					"the snapshot came from could have issued after taking it. People the running\n" +
					"policy no longer has are offboarded.",
				Flags: []cli.Flag{operatorConfigFlag()},
				Action: cliAction(func(c *cli.Context) error {
					if c.NArg() != 1 {
						return usageError("snapshot restore needs one argument: the snapshot file")
					}
					f, err := os.Open(c.Args().First())
					if err != nil {
						return err
					}
					defer f.Close()
					return withOperator(c, operatorRestoreTimeout, func(ctx context.Context, o *approvals.OperatorClient) error {
						info, err := o.SnapshotRestore(ctx, f)
						if err != nil {
							return err
						}
						fmt.Fprintf(c.App.Writer, "restored %d requests; serials continue above %d (epoch %d); audit log at entry %d\n",
							info.Requests, info.LastSerial, info.Epoch, info.Audit.Seq)
						return nil
					})
				}),
			},
		},
		Action: commandGroup("operator snapshot"),
	}
}
