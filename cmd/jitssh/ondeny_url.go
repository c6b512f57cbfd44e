package main

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jitssh/jitssh/principals"
)

// gitHost is where a Git repository is served over SSH.
type gitHost struct {
	host string
	port int // 22 when not given
}

func (h gitHost) String() string { return net.JoinHostPort(h.host, strconv.Itoa(h.port)) }

// gitRemoteURL is an SSH Git URL taken apart: ssh://[user@]host[:port]/path,
// git+ssh:// and ssh+git:// alike, or the scp-like [user@]host:path.
type gitRemoteURL struct {
	host gitHost
	path string
}

// parseGitRemoteURL reads an SSH Git URL; local paths, file:// and
// http(s):// URLs report false.
func parseGitRemoteURL(s string) (gitRemoteURL, bool) {
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		switch scheme {
		case "ssh", "git+ssh", "ssh+git":
		default:
			return gitRemoteURL{}, false
		}
		u, err := url.Parse("ssh://" + rest)
		if err != nil || u.Hostname() == "" {
			return gitRemoteURL{}, false
		}
		port := 22
		if p := u.Port(); p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n <= 0 || n > 65535 {
				return gitRemoteURL{}, false
			}
			port = n
		}
		return gitRemoteURL{host: gitHost{host: u.Hostname(), port: port}, path: u.Path}, true
	}
	// scp-like: a colon before any slash.
	colon := strings.IndexByte(s, ':')
	slash := strings.IndexByte(s, '/')
	if colon <= 0 || (slash >= 0 && slash < colon) {
		return gitRemoteURL{}, false
	}
	host := s[:colon]
	if at := strings.LastIndexByte(host, '@'); at >= 0 {
		host = host[at+1:]
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if host == "" {
		return gitRemoteURL{}, false
	}
	return gitRemoteURL{host: gitHost{host: host, port: 22}, path: s[colon+1:]}, true
}

// repo is the repository name the URL's path names, as a jitssh server
// reads it.
func (u gitRemoteURL) repo() (string, error) { return principals.NormalizeRepo(u.path) }

// sshTarget is what an ssh command line connects to.
type sshTarget struct {
	host gitHost
	// command is the remote command's words, nil when there is none.
	command []string
}

// parseSSHCommandLine reads an ssh command line as ssh itself does:
// options, the destination, more options, then the command words. It
// reports false when there is no destination.
func parseSSHCommandLine(args []string) (sshTarget, bool) {
	var t sshTarget
	var dest string
	port := 0
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			rest := args[i+1:]
			if dest == "" {
				if len(rest) == 0 {
					return t, false
				}
				dest, rest = rest[0], rest[1:]
			}
			t.command = rest
			break
		}
		if len(a) > 1 && a[0] == '-' {
			// -o Opt or -oOpt: the argument is the rest of this word or
			// the next word.
			for j := 1; j < len(a); j++ {
				if strings.IndexByte(sshOptsWithArg, a[j]) < 0 {
					continue
				}
				val := a[j+1:]
				if j == len(a)-1 {
					i++
					if i < len(args) {
						val = args[i]
					}
				}
				if a[j] == 'p' {
					if n, err := strconv.Atoi(val); err == nil {
						port = n
					}
				}
				break
			}
			continue
		}
		if dest == "" {
			dest = a
			continue
		}
		t.command = args[i:]
		break
	}
	if dest == "" {
		return t, false
	}
	if u, ok := parseGitRemoteURL(dest); ok && strings.HasPrefix(dest, "ssh://") {
		// ssh accepts ssh://[user@]host[:port] as a destination.
		t.host = u.host
	} else {
		if at := strings.LastIndexByte(dest, '@'); at >= 0 {
			dest = dest[at+1:]
		}
		t.host = gitHost{host: dest, port: 22}
	}
	if port > 0 {
		t.host.port = port
	}
	return t, true
}
