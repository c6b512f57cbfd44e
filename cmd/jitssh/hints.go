package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/jitssh/jitssh/ca"
)

// This file turns the errors a person can fix into ones that say how.

var (
	badFlagValue = regexp.MustCompile(`^invalid value "(.*)" for flag -([^:]+): `)
	badEnvValue  = regexp.MustCompile(`^could not parse "(.*)" as [a-z0-9 ]+ value from environment variable "([^"]+)" for flag ([^:]+): `)
	plainNumber  = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
)

// explainFlagError rewrites the flag package's "invalid value" errors for
// cmd's flags: which flag, what was wrong with the value, and what a right
// one looks like. Other errors pass unchanged.
func explainFlagError(cmd *cli.Command, err error) string {
	msg := err.Error()
	var value, name, shown, reason string
	if m := badFlagValue.FindStringSubmatch(msg); m != nil {
		value, name = m[1], m[2]
		shown = "--" + name + " " + value
		reason = msg[len(m[0]):]
	} else if m := badEnvValue.FindStringSubmatch(msg); m != nil {
		value, name = m[1], m[3]
		shown = m[2] + "=" + value
		reason = msg[len(m[0]):]
	} else {
		return msg
	}
	// A flag's own refusal (a value given twice, say) says what is wrong
	// better than a guess from the flag's type.
	parseFailure := strings.Contains(reason, "parse") || strings.Contains(reason, "invalid syntax") ||
		strings.Contains(reason, "duration") || strings.Contains(reason, "out of range")
	var flag cli.Flag
	if cmd != nil {
		for _, f := range cmd.Flags {
			for _, n := range f.Names() {
				if n == name {
					flag = f
				}
			}
		}
	}
	if !parseFailure && reason != "" {
		return fmt.Sprintf("flag -%s: %s", name, reason)
	}
	switch flag.(type) {
	case *cli.DurationFlag:
		if plainNumber.MatchString(value) {
			return fmt.Sprintf("%s: a duration needs a unit: %ss? %sm? (s, m or h; e.g. 90s, 30m, 2h)", shown, value, value)
		}
		return fmt.Sprintf("%s: not a duration; write it like 90s, 30m or 2h", shown)
	case *cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
		return fmt.Sprintf("%s: not a whole number", shown)
	}
	return fmt.Sprintf("%s: not a valid value", shown)
}

// needCA makes the commands that use an existing CA (everything under "ca"
// with a --dir except init) say, when there is none in --dir, how to make
// one, before they try.
func needCA(cmds []*cli.Command) {
	for _, group := range cmds {
		if group.Name != "ca" {
			continue
		}
		for _, cmd := range group.Subcommands {
			if cmd.Name == "init" || !hasFlag(cmd, "dir") {
				continue
			}
			before := cmd.Before
			cmd.Before = func(c *cli.Context) error {
				if dir := c.String("dir"); dir != "" {
					key := filepath.Join(dir, ca.PrivateKeyFile)
					if _, err := os.Stat(key); errors.Is(err, os.ErrNotExist) {
						return cli.Exit(fmt.Sprintf("load CA key: no CA in %s (no %s there): create one with `jitssh ca init --dir %s`, or give --dir the directory of an existing CA",
							dir, ca.PrivateKeyFile, shWord(dir)), exitError)
					}
				}
				if before != nil {
					return before(c)
				}
				return nil
			}
		}
	}
}

func hasFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				return true
			}
		}
	}
	return false
}

// dialDaemon connects to the daemon like dialAPI. When that fails because
// the daemon's host key is not pinned, it says how to pin it, with the
// key the daemon offers and its fingerprint to check first: nothing is
// trusted on first use, but the person should not have to dig for the
// line to add.
func dialDaemon(c *cli.Context) (*apiClient, error) {
	client, err := dialAPI(c)
	if err == nil {
		return client, nil
	}
	servers := splitServers(serverFlag(c))
	file, ferr := knownHostsPath(c.String("known-hosts"))
	if len(servers) == 0 || ferr != nil {
		return nil, err
	}
	// Each node of a cluster has its own host key: one line per node
	// that is not pinned.
	var hints []string
	for _, server := range servers {
		if hint := pinHint(server, file); hint != "" {
			hints = append(hints, hint)
		}
	}
	if len(hints) > 0 {
		return nil, errors.New(strings.Join(hints, "\n"))
	}
	return nil, err
}

// knownHostsPath is the file dialAPI reads: --known-hosts, else
// ~/.ssh/known_hosts.
func knownHostsPath(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".ssh", "known_hosts"), nil
}

// pinHint explains a daemon whose host key file has no entry for it, or
// is missing; "" when that is not the problem (a key that does not match
// is not for the person to paper over).
func pinHint(server, file string) string {
	_, statErr := os.Stat(file)
	missing := errors.Is(statErr, os.ErrNotExist)
	key := offeredHostKey(server)
	if !missing {
		check, err := knownhosts.New(file)
		if err != nil || key == nil {
			return ""
		}
		var keyErr *knownhosts.KeyError
		if err := check(knownhosts.Normalize(server), tcpAddr(server), key); !errors.As(err, &keyErr) || len(keyErr.Want) > 0 {
			return ""
		}
	}
	what := fmt.Sprintf("the daemon's host key for %s is not in %s", server, file)
	if missing {
		what = fmt.Sprintf("no known_hosts file %s to check the daemon's host key for %s against", file, server)
	}
	if key == nil {
		return what + "; add the daemon's host key there (its operator has it: the daemon logs its fingerprint when it starts), or name another file with --known-hosts or JITSSH_KNOWN_HOSTS"
	}
	return fmt.Sprintf("%s; refusing to trust it. The daemon there offers %s %s: if its operator confirms that fingerprint (the daemon logs it when it starts), pin it with: echo %s >> %s",
		what, key.Type(), ssh.FingerprintSHA256(key), shq(knownhosts.Line([]string{knownhosts.Normalize(server)}, key)), shWord(file))
}

var errHostKeySeen = errors.New("host key seen")

// offeredHostKey connects only as far as the daemon's host key; it
// authenticates nothing and sends nothing else.
func offeredHostKey(server string) ssh.PublicKey {
	var key ssh.PublicKey
	conn, err := ssh.Dial("tcp", server, &ssh.ClientConfig{
		User: "jitssh",
		HostKeyCallback: func(_ string, _ net.Addr, k ssh.PublicKey) error {
			key = k
			return errHostKeySeen
		},
		Timeout: 5 * time.Second,
	})
	if err == nil {
		conn.Close()
	}
	return key
}

func tcpAddr(server string) net.Addr {
	host, port, err := net.SplitHostPort(server)
	if err != nil {
		return &net.TCPAddr{}
	}
	p, _ := strconv.Atoi(port)
	return &net.TCPAddr{IP: net.ParseIP(strings.Trim(host, "[]")), Port: p}
}
