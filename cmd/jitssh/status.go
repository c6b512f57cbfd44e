package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/ca"
	"github.com/jitssh/jitssh/principals"
)

// liveCert is a jitssh certificate found in ssh-agent.
type liveCert struct {
	Request    string    `json:"request"`
	KeyID      string    `json:"key_id"`
	Serial     uint64    `json:"serial"`
	State      string    `json:"state,omitempty"` // status only: the daemon's word on it, or "unknown"
	Grants     []string  `json:"grants"`
	ValidUntil time.Time `json:"valid_until"`
	Left       string    `json:"left"`
	cert       *ssh.Certificate
}

// isJitsshCert: a user certificate whose principals are all grants.
func isJitsshCert(c *ssh.Certificate) bool {
	if c.CertType != ssh.UserCert || len(c.ValidPrincipals) == 0 {
		return false
	}
	for _, p := range c.ValidPrincipals {
		if _, err := principals.Parse(p); err != nil {
			return false
		}
	}
	return true
}

func liveCerts() ([]liveCert, error) {
	certs, err := jitsshCertsInAgent()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	var out []liveCert
	for _, cert := range certs {
		until := time.Unix(int64(cert.ValidBefore), 0)
		if !now.Before(until) {
			continue
		}
		_, request := ca.ParseKeyID(cert.KeyId)
		out = append(out, liveCert{Request: request, KeyID: cert.KeyId, Serial: cert.Serial,
			Grants: cert.ValidPrincipals, ValidUntil: until, Left: human(until.Sub(now)), cert: cert})
	}
	return out, nil
}

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "your jitssh certificates in ssh-agent, whether each still grants access, and the time it has left",
		Description: "Lists the grant certificates in ssh-agent. When JITSSH_SERVER (or --server) names the\n" +
			"daemon, each one's STATE is the daemon's word: active, revoked, released or expired; a\n" +
			"revoked certificate stays in the agent until its lifetime ends, but no Git server accepts\n" +
			"it. When the daemon cannot be asked, STATE is unknown and a note on stderr says why.",
		Flags: append(clientFlags(), jsonOutFlag()),
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError("unexpected argument %q", c.Args().First())
			}
			certs, err := liveCerts()
			if err != nil {
				return err
			}
			askDaemonState(c, certs)
			if c.Bool("json") {
				if certs == nil {
					certs = []liveCert{}
				}
				return writeJSON(c.App.Writer, certs)
			}
			if len(certs) == 0 {
				fmt.Fprintln(c.App.Writer, "no live jitssh certificates in ssh-agent")
				return nil
			}
			t := &grid{}
			t.addText("REQUEST", "SERIAL", "STATE", "GRANTS", "LEFT")
			for _, lc := range certs {
				t.addText(lc.Request, strconv.FormatUint(lc.Serial, 10), lc.State, strings.Join(lc.Grants, " "), lc.Left)
			}
			return t.write(c.App.Writer, false)
		},
	}
}

// askDaemonState sets each certificate's State from the daemon's record of
// its request: the agent cannot know that a certificate was revoked. A
// daemon that cannot be asked leaves every State "unknown" and says why on
// stderr, so that status still works offline.
func askDaemonState(c *cli.Context, certs []liveCert) {
	for i := range certs {
		certs[i].State = "unknown"
	}
	if len(certs) == 0 {
		return
	}
	if serverFlag(c) == "" {
		fmt.Fprintln(c.App.ErrWriter, "note: no daemon named (JITSSH_SERVER or --server): whether each grant was revoked is unknown")
		return
	}
	client, err := dialAPI(c)
	if err != nil {
		fmt.Fprintf(c.App.ErrWriter, "note: could not ask the daemon whether these grants were revoked: %v\n", err)
		return
	}
	defer client.Close()
	now := time.Now()
	for i, lc := range certs {
		got, err := client.call(methodGet, apiRequest{ID: lc.Request})
		if err != nil {
			fmt.Fprintf(c.App.ErrWriter, "note: %s: %v\n", lc.Request, err)
			continue
		}
		if got.Request.Serial != lc.Serial {
			// Not the certificate the daemon issued for that request.
			fmt.Fprintf(c.App.ErrWriter, "note: %s: the daemon issued serial %d for it, the agent holds serial %d\n", lc.Request, got.Request.Serial, lc.Serial)
			continue
		}
		certs[i].State = string(got.Request.CertState(now))
		if certs[i].State != string(approvals.CertActive) {
			certs[i].Left = "-" // the time left on the certificate grants nothing
		}
	}
}
