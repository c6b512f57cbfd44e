package ca

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jitssh/jitssh/principals"
)

// Profile is the shape of a certificate: the grant profile that jitssh's
// own Git servers read, or the account profile of one Git host. A Git host
// maps a certificate to one whole account and scopes nothing finer, so a
// host profile names an account and carries no grant at all.
type Profile string

// Profiles. The zero value is ProfileGrant.
const (
	// ProfileGrant is the v1 shape: grant principals, no extensions.
	ProfileGrant Profile = "grant"
	// ProfileGitHub is for GitHub (Enterprise Cloud organisations and
	// GitHub Enterprise Server) with an SSH certificate authority.
	ProfileGitHub Profile = "github"
	// ProfileGitLab is for GitLab with certificate login: self-managed
	// instances behind OpenSSH, and groups' SSH certificates.
	ProfileGitLab Profile = "gitlab"
	// ProfileGitea is for Gitea and Forgejo with trusted user CAs.
	ProfileGitea Profile = "gitea"
)

// HostProfiles are the profiles of Git hosts, in the order help texts list
// them.
var HostProfiles = []Profile{ProfileGitHub, ProfileGitLab, ProfileGitea}

// Errors of host profile requests, wrapped with context.
var (
	ErrBadProfile = errors.New("bad certificate profile")
	ErrBadAccount = errors.New("bad Git host account")
	ErrBadHost    = errors.New("bad Git host name")
)

// ParseProfile reads a profile name: "grant", "github", "gitlab" or
// "gitea". The empty string is the grant profile.
func ParseProfile(s string) (Profile, error) {
	switch p := Profile(s); p {
	case "", ProfileGrant:
		return ProfileGrant, nil
	case ProfileGitHub, ProfileGitLab, ProfileGitea:
		return p, nil
	}
	return "", fmt.Errorf("%w: %q (want grant, github, gitlab or gitea)", ErrBadProfile, s)
}

// ParseHostProfile reads the name of a Git host's profile; the grant
// profile is refused.
func ParseHostProfile(s string) (Profile, error) {
	p, err := ParseProfile(s)
	if err == nil && p == ProfileGrant {
		err = fmt.Errorf("%w: %q (want github, gitlab or gitea)", ErrBadProfile, s)
	}
	return p, err
}

// IsHost reports whether p is the profile of a Git host.
func (p Profile) IsHost() bool { return p == ProfileGitHub || p == ProfileGitLab || p == ProfileGitea }

// KeyIDIsAccount reports whether the host reads the certificate's key ID
// as the account, so that the key ID can carry nothing else.
func (p Profile) KeyIDIsAccount() bool { return p == ProfileGitLab }

// GitHub's limit on a certificate's validity. GitHub refuses certificates
// that never expire or expire more than 366 days after they were created
// (https://github.blog/changelog/2024-03-20-new-ssh-cas-must-sign-expiring-certificates/);
// jitssh stays under a year, backdating included.
const githubMaxValidity = 365 * 24 * time.Hour

// gitHubDotCom is the host of GitHub's own extension name.
const gitHubDotCom = "github.com"

// Names each host accepts. Compiled on first use, like every pattern in
// the binary, so a Git connection does not pay for them at start.
var (
	// GitHub usernames: letters, digits and single hyphens, not at
	// either end (GitHub's sign-up rules); Enterprise Managed Users add
	// "_" and the enterprise's short code.
	githubLoginRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z0-9](?:-?[A-Za-z0-9])*(?:_[A-Za-z0-9]+)?$`)
	})
	// GitLab usernames: letters, digits, '_', '-' and '.', starting with
	// a letter, digit or '_' (GitLab's "Username" validation), not ending
	// in '.', ".git" or ".atom".
	gitlabUserRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)
	})
	// Gitea principals: with its default SSH_AUTHORIZED_PRINCIPALS_ALLOW
	// (email, username) a principal is the user's name or e-mail address.
	giteaPrincipalRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]*(?:@[A-Za-z0-9][A-Za-z0-9.-]*)?$`)
	})
	// A DNS host name, as a GitHub Enterprise Server is reached by.
	hostNameRE = sync.OnceValue(func() *regexp.Regexp {
		return regexp.MustCompile(`^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$`)
	})
)

// CheckAccount reports whether name is an account p's host can have. Names
// are kept to what each host documents; beyond that, no account may read
// as a jitssh grant, so a host certificate can never be taken for one by a
// jitssh Git server that trusts the same CA.
func CheckAccount(p Profile, name string) error {
	const maxLen = 255
	if name == "" {
		return fmt.Errorf("%w: empty", ErrBadAccount)
	}
	if len(name) > maxLen {
		return fmt.Errorf("%w: %d bytes (at most %d)", ErrBadAccount, len(name), maxLen)
	}
	if _, err := principals.Parse(name); err == nil || strings.HasPrefix(name, "git:") {
		return fmt.Errorf("%w: %q reads as a jitssh grant", ErrBadAccount, name)
	}
	switch p {
	case ProfileGitHub:
		if len(name) > 39+1+8 || !githubLoginRE().MatchString(name) {
			return fmt.Errorf("%w: %q is not a GitHub username (letters, digits and single inner hyphens, at most 39, and an Enterprise Managed Users \"_shortcode\")", ErrBadAccount, name)
		}
	case ProfileGitLab:
		if !gitlabUserRE().MatchString(name) || strings.HasSuffix(name, ".") ||
			strings.HasSuffix(name, ".git") || strings.HasSuffix(name, ".atom") {
			return fmt.Errorf("%w: %q is not a GitLab username (letters, digits, '_', '-', '.'; not ending in '.', .git or .atom)", ErrBadAccount, name)
		}
	case ProfileGitea:
		if !giteaPrincipalRE().MatchString(name) {
			return fmt.Errorf("%w: %q is not a Gitea principal (a user name or e-mail address)", ErrBadAccount, name)
		}
	default:
		return fmt.Errorf("%w: %q has no accounts", ErrBadProfile, p)
	}
	return nil
}

// CheckHost reports whether host may name a GitHub Enterprise Server for
// the github profile: a lower-case DNS name; "" (and "github.com") mean
// github.com itself. Other profiles take no host.
func CheckHost(p Profile, host string) error {
	if host == "" {
		return nil
	}
	if p != ProfileGitHub {
		return fmt.Errorf("%w: the %s profile takes no host (only github does, for GitHub Enterprise Server)", ErrBadHost, p)
	}
	if len(host) > 253 || !hostNameRE().MatchString(host) {
		return fmt.Errorf("%w: %q is not a lower-case DNS host name (no port, no scheme)", ErrBadHost, host)
	}
	return nil
}

// GitHubLoginExtension is the extension by which GitHub knows whose a
// certificate is: "login@github.com" on GitHub.com, "login@HOSTNAME" on a
// GitHub Enterprise Server reached at HOSTNAME
// (https://docs.github.com/en/enterprise-cloud@latest/organizations/managing-git-access-to-your-organizations-repositories/about-ssh-certificate-authorities#issuing-certificates).
func GitHubLoginExtension(host string) string {
	if host == "" {
		host = gitHubDotCom
	}
	return "login@" + host
}

// HostShape is what host profile p puts in a certificate for account
// (host: the github profile's Enterprise Server name, "" for github.com):
// its principals, its extensions, and the key ID the host requires, ""
// when any will do. An auditor holds an issued certificate to it.
func HostShape(p Profile, account, host string) (names []string, ext map[string]string, keyID string) {
	if host == gitHubDotCom {
		host = ""
	}
	switch p {
	case ProfileGitHub:
		// GitHub reads only the login extension. The account is the
		// principal too, because OpenSSH refuses a certificate without
		// principals: a GitHub Enterprise Server fronted by it, and the
		// stock sshd the tests play GitHub with, need one.
		return []string{account}, map[string]string{GitHubLoginExtension(host): account}, ""
	case ProfileGitLab:
		// GitLab takes the key ID as the username, self-managed behind
		// OpenSSH (gitlab-shell-authorized-principals-check %i ...,
		// https://docs.gitlab.com/ee/administration/operations/ssh_certificates.html)
		// and in a group's SSH certificates
		// (https://docs.gitlab.com/ee/user/group/ssh_certificates.html).
		// The principal is the username too; list it, or %i, after the
		// key ID in the principals command.
		return []string{account}, map[string]string{}, account
	case ProfileGitea:
		// Gitea matches the certificate's principals against those a user
		// registered (SSH_TRUSTED_USER_CA_KEYS,
		// SSH_AUTHORIZED_PRINCIPALS_ALLOW:
		// https://docs.gitea.com/administration/config-cheat-sheet#ssh-server-ssh).
		return []string{account}, map[string]string{}, ""
	}
	return nil, nil, ""
}

// checkHostRequest checks the parts of req only a host profile has, and
// returns the certificate's principals, extensions and key ID.
func checkHostRequest(req CertRequest) ([]string, map[string]string, string, error) {
	if len(req.Grants) > 0 {
		return nil, nil, "", fmt.Errorf("%w: a %s certificate carries no grants; the Git host decides repositories and refs", ErrBadProfile, req.Profile)
	}
	if err := CheckAccount(req.Profile, req.Account); err != nil {
		return nil, nil, "", err
	}
	if err := CheckHost(req.Profile, req.Host); err != nil {
		return nil, nil, "", err
	}
	names, ext, keyID := HostShape(req.Profile, req.Account, req.Host)
	switch {
	case keyID == "":
		keyID = req.KeyID
	case req.KeyID != "" && req.KeyID != keyID:
		return nil, nil, "", fmt.Errorf("%w: %s reads the key ID as the username, so it must be %q, not %q", ErrBadKeyID, req.Profile, keyID, req.KeyID)
	}
	if err := checkKeyID(keyID); err != nil {
		return nil, nil, "", err
	}
	return names, ext, keyID, nil
}

// checkGrantRequest checks that a grant profile request names no host
// account.
func checkGrantRequest(req CertRequest) error {
	if req.Account != "" || req.Host != "" {
		return fmt.Errorf("%w: a grant certificate names no Git host account or host", ErrBadProfile)
	}
	return nil
}

// maxValidity is the longest validity (ValidBefore - ValidAfter) p's host
// accepts; zero when it sets none.
func (p Profile) maxValidity() time.Duration {
	if p == ProfileGitHub {
		return githubMaxValidity
	}
	return 0
}
