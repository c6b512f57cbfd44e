package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"github.com/jitssh/jitssh/approvals"
	"github.com/jitssh/jitssh/audit"
	"github.com/jitssh/jitssh/ca"
)

// maxTrustFileSize bounds the head key and head files `audit verify` reads.
const maxTrustFileSize = 1 << 20

// defaultMaxFailures is how many failures `audit verify` prints unless told
// otherwise; the rest are counted.
const defaultMaxFailures = 50

func auditVerifyCommand() *cli.Command {
	return &cli.Command{
		Name:      "verify",
		Usage:     "verify the log: chain, signatures, and every certificate against its approvals",
		UsageText: "jitssh audit verify --log FILE [--log FILE...] --ca FILE [--people CONFIG...] [--jwks NAME=FILE...] [--allow-unknown-policy] [--head-key PUBKEYFILE [--head FILE | --no-head]] [--max-failures N] [--json]",
		Description: "Checks, without trusting the daemon: the hash chain; that every request is signed by its\n" +
			"requester and every approval or denial by its approver (--people: the daemon's config, or\n" +
			"any YAML file with its people: section); and that every issued certificate is signed by a\n" +
			"CA key in --ca, follows an undenied request with the approvals its steps require from the\n" +
			"right groups, nobody approving their own request, carries exactly the requested grant, and\n" +
			"is valid no longer than granted. A CI/CD job's request carries its platform's token instead\n" +
			"of a signature: with --jwks NAME=FILE (the issuer's key set), that the token verifies as of\n" +
			"the request and vouches for the recorded claims; without, it is reported as not checked. Each\n" +
			"token must get one request only. With --head-key (the daemon's host public key), also that\n" +
			"every checkpoint entry is signed by that key and matches the chain at the seq it signs, and\n" +
			"that the log still holds the entry its signed head names: FILE.head beside the log unless\n" +
			"--head names another copy (keep one where the daemon cannot write) or --no-head skips it.\n" +
			"Prints \"ok: N entries, head H\"; otherwise names every entry that fails, with its line and\n" +
			"seq (at most --max-failures of them, and how many more), checks the rest of the log all the\n" +
			"same, and exits 1.",
		Flags: []cli.Flag{
			auditLogFlag(),
			onceString{&cli.StringFlag{Name: "ca", Usage: "trusted CA public keys, as the Git servers read them: one key a line, no options (required)", EnvVars: []string{"JITSSH_AUDIT_CA"}, TakesFile: true}},
			newFilesFlag("people", "JITSSH_AUDIT_PEOPLE", "the daemon's config (or a YAML file of people: alone); repeat it to give several versions of it"),
			&cli.StringSliceFlag{Name: "jwks", Usage: "`NAME=FILE`: the key set (JWKS) of the CI/CD token issuer the daemon calls NAME, to check workload requests' tokens (repeatable)", EnvVars: []string{"JITSSH_AUDIT_JWKS"}, TakesFile: true},
			&cli.BoolFlag{Name: "allow-unknown-policy", Usage: "count requests decided by a policy version not given with --people, instead of failing them"},
			onceString{&cli.StringFlag{Name: "head", Usage: "the signed head to check the log against (default: the log's FILE.head, when it exists)", EnvVars: []string{"JITSSH_AUDIT_HEAD"}, TakesFile: true}},
			onceString{&cli.StringFlag{Name: "head-key", Usage: "public key that signs checkpoints and heads: the daemon's host key", EnvVars: []string{"JITSSH_AUDIT_HEAD_KEY"}, TakesFile: true}},
			&cli.BoolFlag{Name: "no-head", Usage: "do not check the log against a signed head file"},
			onceInt{&cli.IntFlag{Name: "max-failures", Value: defaultMaxFailures, Usage: "print at most N failures (0: all); every failure is counted"}},
			auditJSONFlag(),
		},
		Action: cliAction(auditVerify),
	}
}

// verifyResult is what `audit verify --json` prints.
type verifyResult struct {
	OK            bool   `json:"ok"`
	Entries       uint64 `json:"entries"`
	Head          string `json:"head"`
	Requests      int    `json:"requests"`
	Approvals     int    `json:"approvals"`
	Denials       int    `json:"denials"`
	Issued        int    `json:"issued"`
	BreakGlass    int    `json:"break_glass"`
	PeopleChecked bool   `json:"people_checked"`
	// The signed head the log was checked against, and the seq it names.
	HeadFile      string  `json:"head_file,omitempty"`
	CheckpointSeq *uint64 `json:"checkpoint_seq,omitempty"`
	// Checkpoint entries verified with --head-key, and read without one.
	Checkpoints          int `json:"checkpoints"`
	CheckpointsUnchecked int `json:"checkpoints_unchecked"`
	// The policy versions given, with the requests each decided; requests
	// judged by their version, decided by versions not given, and
	// signatures of people in no version given that could not be checked.
	PolicyVersions []policyVersionView `json:"policy_versions"`
	// Each log, in the order given.
	Logs          []logResult `json:"logs"`
	PolicyChecked int         `json:"policy_checked"`
	UnknownPolicy int         `json:"unknown_policy"`
	NotChecked    int         `json:"not_checked"`
	// Workload requests whose token verified with --jwks, and those whose
	// token could not be checked.
	WorkloadChecked   int         `json:"workload_checked"`
	WorkloadUnchecked int         `json:"workload_unchecked"`
	Failure           *failureAt  `json:"failure,omitempty"`  // the first failure
	Failures          []failureAt `json:"failures,omitempty"` // the first --max-failures of them
	FailureCount      int         `json:"failure_count"`      // all of them
}

// logResult is one log as verify reports it.
type logResult struct {
	Path          string  `json:"path"`
	Entries       uint64  `json:"entries"`
	Head          string  `json:"head"`
	HeadFile      string  `json:"head_file,omitempty"`
	CheckpointSeq *uint64 `json:"checkpoint_seq,omitempty"`
	Checkpoints   int     `json:"checkpoints"`
}

// policyVersionView is a policy version as verify reports it; Source is
// empty for a version the log names but nobody supplied.
type policyVersionView struct {
	Digest   string `json:"digest"`
	Source   string `json:"source,omitempty"`
	Requests int    `json:"requests"`
}

// failureAt is one failure, where it is.
type failureAt struct {
	Log    string `json:"log"`
	Line   int    `json:"line"`
	Seq    uint64 `json:"seq,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Reason string `json:"reason"`
	Cause  string `json:"cause"` // what kind of failure, e.g. "hash chain broken"
	Error  string `json:"error"`
}

func (f *failureAt) String() string {
	if f.Line == 0 {
		return f.Log + ": " + f.Reason + ": " + f.Cause
	}
	where := fmt.Sprintf("%s line %d", f.Log, f.Line)
	switch {
	case f.Seq != 0 && f.Kind != "":
		where += fmt.Sprintf(" (seq %d, %s)", f.Seq, f.Kind)
	case f.Seq != 0:
		where += fmt.Sprintf(" (seq %d)", f.Seq)
	}
	return where + ": " + f.Reason + ": " + f.Cause
}

func failureOf(log string, err error) failureAt {
	f := failureAt{Log: log, Error: err.Error(), Reason: err.Error(), Cause: err.Error()}
	var ce *audit.CheckError
	var ve *audit.VerifyError
	var he *audit.HeadError
	switch {
	case errors.As(err, &he):
		f.Reason, f.Cause = he.Reason, he.Err.Error()
	case errors.As(err, &ce):
		f.Line, f.Seq, f.Kind, f.Reason, f.Cause = ce.Line, ce.Seq, ce.Kind, ce.Reason, ce.Err.Error()
	case errors.As(err, &ve):
		f.Line, f.Seq, f.Reason, f.Cause = ve.Line, ve.Seq, ve.Reason, ve.Err.Error()
	}
	return f
}

// failures keeps the first max failures and counts them all.
type failures struct {
	max   int // 0: keep all
	kept  []failureAt
	total int
}

func (fs *failures) add(f failureAt) {
	fs.total++
	if fs.max == 0 || len(fs.kept) < fs.max {
		fs.kept = append(fs.kept, f)
	}
}

// write prints the failures kept, one a line, and how many more there were.
func (fs *failures) write(w io.Writer) {
	for i := range fs.kept {
		fmt.Fprintln(w, terminalSafe(fs.kept[i].String()))
	}
	if more := fs.total - len(fs.kept); more > 0 {
		fmt.Fprintf(w, "... and %d more %s (--max-failures 0 prints them all)\n", more, plural(more, "failure", "failures"))
	}
}

func auditVerify(c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	paths, err := logPaths(c)
	if err != nil {
		return err
	}
	caPath, err := requiredString(c, "ca")
	if err != nil {
		return err
	}
	fails := &failures{max: c.Int("max-failures")}
	if fails.max < 0 {
		return usageError("--max-failures %d: want 0 or more", fails.max)
	}
	headPath, headKeyPath := c.String("head"), c.String("head-key")
	switch {
	case headPath != "" && headKeyPath == "":
		return usageError("--head needs --head-key, the key that signed it")
	case headPath != "" && c.Bool("no-head"):
		return usageError("--head and --no-head contradict each other")
	case headPath != "" && len(paths) > 1:
		return usageError("--head is the head of one log; with several --log, each log's FILE.head is used")
	}
	opts := audit.CheckOptions{}
	// The CA keys as the Git servers read them (TrustedUserCAKeys form), so
	// the auditor trusts exactly what they trust.
	if opts.CAKeys, err = ca.LoadPublicKeys(caPath); err != nil {
		return err
	}
	trust, err := loadPolicies(files(c, "people"))
	if err != nil {
		return err
	}
	opts.People, opts.Policies, opts.AllowUnknownPolicy = trust.people, trust.versions, c.Bool("allow-unknown-policy")
	if opts.VerifyWorkload, err = workloadVerifier(c.StringSlice("jwks")); err != nil {
		return err
	}
	if headKeyPath != "" {
		if opts.HeadKey, err = readHeadKey(headKeyPath); err != nil {
			return err
		}
	}

	// Each log on its own chain, with its own head; what is learnt of
	// requests and serials carries over from one log to the next.
	checker := audit.NewChecker(opts)
	var res verifyResult
	var notes []string
	for _, path := range paths {
		lr, lnotes, err := verifyLog(c, checker, path, headPath, fails)
		if err != nil {
			return err
		}
		res.Logs = append(res.Logs, lr)
		res.Entries += lr.Entries
		notes = append(notes, lnotes...)
	}
	if len(paths) == 1 {
		lr := res.Logs[0]
		res.Head, res.HeadFile, res.CheckpointSeq = lr.Head, lr.HeadFile, lr.CheckpointSeq
	}
	cs := checker.Summary()
	res.Requests, res.Approvals, res.Denials, res.Issued = cs.Requests, cs.Approvals, cs.Denials, cs.Issued
	res.BreakGlass, res.PeopleChecked = cs.BreakGlass, cs.PeopleChecked
	res.Checkpoints, res.CheckpointsUnchecked = cs.Checkpoints, cs.CheckpointsUnchecked
	res.PolicyChecked, res.UnknownPolicy, res.NotChecked = cs.PolicyChecked, cs.UnknownPolicy, cs.NotChecked
	res.PolicyVersions = policyVersionViews(trust.versions, cs.PolicyRequests)
	res.WorkloadChecked, res.WorkloadUnchecked = cs.WorkloadChecked, cs.WorkloadUnchecked
	if cs.WorkloadUnchecked > 0 {
		notes = append(notes, fmt.Sprintf("not checked: %d workload %s: workload token not checked (give --jwks NAME=FILE for its issuer)",
			cs.WorkloadUnchecked, plural(cs.WorkloadUnchecked, "request", "requests")))
	}
	if cs.UnknownPolicy > 0 && opts.AllowUnknownPolicy {
		notes = append(notes, fmt.Sprintf("not checked: %d %s decided by policy versions not given (--allow-unknown-policy)",
			cs.UnknownPolicy, plural(cs.UnknownPolicy, "request", "requests")))
	}
	if cs.NotChecked > 0 {
		notes = append(notes, fmt.Sprintf("not checked: %d %s by people in no policy version given",
			cs.NotChecked, plural(cs.NotChecked, "signature", "signatures")))
	}
	if cs.CheckpointsUnchecked > 0 {
		notes = append(notes, fmt.Sprintf("not checked: %d checkpoint %s (no --head-key)", cs.CheckpointsUnchecked, plural(cs.CheckpointsUnchecked, "entry", "entries")))
	}
	res.OK, res.FailureCount = fails.total == 0, fails.total
	if !res.OK {
		res.Failure, res.Failures = &fails.kept[0], fails.kept
	}
	if c.Bool("json") {
		if err := writeJSON(c.App.Writer, res); err != nil {
			return err
		}
	}
	if !res.OK {
		if !c.Bool("json") {
			fails.write(c.App.ErrWriter)
		}
		where := paths[0]
		if len(paths) > 1 {
			where = fmt.Sprintf("%d logs", len(paths))
		}
		return fmt.Errorf("audit verify: %d %s in %s (%d entries read)", fails.total, plural(fails.total, "failure", "failures"), where, res.Entries)
	}
	if c.Bool("json") {
		return nil
	}
	w := c.App.Writer
	for _, lr := range res.Logs {
		if len(paths) == 1 {
			fmt.Fprintf(w, "ok: %d entries, head %s\n", lr.Entries, lr.Head)
		} else {
			fmt.Fprintf(w, "ok: %s: %d entries, head %s\n", terminalSafe(lr.Path), lr.Entries, lr.Head)
		}
	}
	fmt.Fprintf(w, "checked: %d requests, %d approvals, %d denials, %d certificates issued, %d break-glass certificates (not approved by design)\n",
		res.Requests, res.Approvals, res.Denials, res.Issued, res.BreakGlass)
	versioned := 0
	for _, n := range cs.PolicyRequests {
		versioned += n
	}
	if versioned > 0 { // a log from before versions were recorded has nothing to say of them
		for _, v := range res.PolicyVersions {
			if v.Source != "" {
				fmt.Fprintf(w, "policy version %s (%s): %d %s judged by it\n", v.Digest, terminalSafe(v.Source), v.Requests, plural(v.Requests, "request", "requests"))
			} else {
				fmt.Fprintf(w, "policy version %s (not given): %d %s\n", terminalSafe(v.Digest), v.Requests, plural(v.Requests, "request", "requests"))
			}
		}
		if n := res.Requests - versioned; n > 0 {
			fmt.Fprintf(w, "%d %s recorded without a policy version: judged against everyone in --people\n", n, plural(n, "request", "requests"))
		}
	}
	if res.WorkloadChecked > 0 {
		fmt.Fprintf(w, "workload tokens: %d checked against the issuers' key sets (--jwks)\n", res.WorkloadChecked)
	}
	if res.Checkpoints > 0 {
		fmt.Fprintf(w, "checkpoints: %d signed with the head key, each matching the chain\n", res.Checkpoints)
	}
	for _, lr := range res.Logs {
		if lr.CheckpointSeq == nil {
			continue
		}
		if len(paths) == 1 {
			fmt.Fprintf(w, "checkpoint: the log holds the signed head at seq %d (%s)\n", *lr.CheckpointSeq, terminalSafe(lr.HeadFile))
		} else {
			fmt.Fprintf(w, "checkpoint: %s holds the signed head at seq %d (%s)\n", terminalSafe(lr.Path), *lr.CheckpointSeq, terminalSafe(lr.HeadFile))
		}
	}
	if !res.PeopleChecked {
		fmt.Fprintln(w, "not checked: signatures and approvers' groups (no --people)")
	}
	for _, n := range notes {
		fmt.Fprintln(w, terminalSafe(n))
	}
	return nil
}

// verifyLog checks one log with checker, against its signed head: headPath
// when given, else the FILE.head beside it unless --no-head. It returns the
// log's result and what could not be checked.
func verifyLog(c *cli.Context, checker *audit.Checker, path, headPath string, fails *failures) (logResult, []string, error) {
	lr := logResult{Path: path}
	var head []byte
	var notes []string
	keyKnown := c.String("head-key") != ""
	switch {
	case headPath != "":
		b, err := readSmallFile(headPath)
		if err != nil {
			return lr, nil, fmt.Errorf("read head: %w", err)
		}
		head, lr.HeadFile = b, headPath
	case !c.Bool("no-head"):
		beside := path + audit.HeadSuffix
		b, err := readSmallFile(beside)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if keyKnown {
				notes = append(notes, "not checked: that "+path+" was not cut short (no signed head "+beside+")")
			}
		case err != nil:
			return lr, nil, fmt.Errorf("read head: %w", err)
		case !keyKnown:
			notes = append(notes, "not checked: the signed head "+beside+" (no --head-key)")
		default:
			head, lr.HeadFile = b, beside
		}
	}
	snap, err := audit.OpenSnapshot(path)
	if err != nil {
		return lr, nil, err
	}
	defer snap.Close()
	sum, err := checker.Check(snap, head, func(err error) {
		f := failureOf(path, err)
		var he *audit.HeadError
		if errors.As(err, &he) {
			f.Log = lr.HeadFile
		}
		fails.add(f)
	})
	if err != nil {
		return lr, nil, fmt.Errorf("audit log %s: %w", path, err)
	}
	lr.Entries, lr.Head, lr.Checkpoints = sum.Entries, sum.Head, sum.Checkpoints
	if sum.HeadChecked {
		lr.CheckpointSeq = &sum.HeadSeq
	}
	return lr, notes, nil
}

// readHeadKey reads the key that signs checkpoints, the daemon's host key,
// the way the daemon reads a person's key: one authorized_keys line without
// options, not a certificate. Blank lines and comments around it are
// skipped.
func readHeadKey(path string) (ssh.PublicKey, error) {
	data, err := readSmallFile(path)
	if err != nil {
		return nil, fmt.Errorf("read head key: %w", err)
	}
	var keys []ssh.PublicKey
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := approvals.ParseIdentityKey(line)
		if err != nil {
			return nil, fmt.Errorf("read head key %s:%d: %w", path, i+1, err)
		}
		keys = append(keys, k)
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("read head key %s: want one key, found %d", path, len(keys))
	}
	return keys[0], nil
}

func readSmallFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTrustFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxTrustFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxTrustFileSize)
	}
	return data, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// policyVersionViews lists the versions given, in the order given, then
// those the log names that nobody gave, by digest.
func policyVersionViews(versions []audit.PolicyVersion, requests map[string]int) []policyVersionView {
	out := []policyVersionView{}
	for _, v := range versions {
		out = append(out, policyVersionView{Digest: v.Digest, Source: v.Source, Requests: requests[v.Digest]})
	}
	var unknown []string
	for d := range requests {
		if !slices.ContainsFunc(versions, func(v audit.PolicyVersion) bool { return v.Digest == d }) {
			unknown = append(unknown, d)
		}
	}
	slices.Sort(unknown)
	for _, d := range unknown {
		out = append(out, policyVersionView{Digest: d, Requests: requests[d]})
	}
	return out
}
