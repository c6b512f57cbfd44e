package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/jitssh/jitssh/approvals"
)

func whoamiCommand() *cli.Command {
	return &cli.Command{
		Name:  "whoami",
		Usage: "who the daemon takes you for (person, groups, key) and how the daemon that answered is",
		Description: "Connects as every other command does (JITSSH_SERVER, JITSSH_IDENTITY or ssh-agent,\n" +
			"JITSSH_KNOWN_HOSTS) and prints the person your key names, their groups, and the daemon's\n" +
			"role, leader and health. A failure here is the failure any other command would meet.",
		Flags: append(clientFlags(), jsonOutFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("unexpected argument %q", c.Args().First())
			}
			client, err := dialAPI(c)
			if err != nil {
				return err
			}
			defer client.Close()
			resp, err := client.call(methodWhoami, apiRequest{})
			if err != nil {
				return err
			}
			w := whoami{Person: resp.Person, Groups: resp.Groups, Key: resp.Key,
				Server: client.conn.RemoteAddr().String(), Node: resp.Node}
			if w.Groups == nil {
				w.Groups = []string{}
			}
			if c.Bool("json") {
				return writeJSON(c.App.Writer, w)
			}
			w.print(c)
			return nil
		},
	}
}

// whoami is the command's answer, as JSON.
type whoami struct {
	Person string                `json:"person"`
	Groups []string              `json:"groups"`
	Key    string                `json:"key"`
	Server string                `json:"server"`
	Node   *approvals.NodeStatus `json:"node,omitempty"`
}

func (w whoami) print(c *cli.Context) {
	out := c.App.Writer
	groups := strings.Join(w.Groups, ", ")
	if groups == "" {
		groups = "(none)"
	}
	fmt.Fprintf(out, "person  %s\n", w.Person)
	fmt.Fprintf(out, "groups  %s\n", groups)
	fmt.Fprintf(out, "key     %s\n", w.Key)
	daemon := w.Server
	if n := w.Node; n != nil {
		health := "healthy"
		if !n.Healthy {
			health = "unhealthy: " + strings.Join(n.Problems, "; ")
		}
		role := n.Role
		if n.Voters > 1 {
			role = fmt.Sprintf("%s of %d voters", n.Role, n.Voters)
			if n.Role != "leader" && n.Leader != "" {
				role += ", leader " + n.Leader
			}
		}
		daemon = fmt.Sprintf("%s (node %s, %s), %s", w.Server, n.ID, role, health)
	}
	fmt.Fprintf(out, "daemon  %s\n", daemon)
}
