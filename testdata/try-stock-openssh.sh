#!/bin/sh
# Try jitssh behind a stock OpenSSH sshd on a high port, with nothing to
# configure system-wide: a CA, a bare repository, an sshd of your own, a
# certificate for one branch, a clone, an allowed push and a refused one.
#
#   sh testdata/try-stock-openssh.sh JITSSH [PORT] [DIR]
#
# JITSSH is the absolute path of a jitssh binary that sshd will run as its
# AuthorizedPrincipalsCommand, so it and every directory above it must be
# owned by root and writable by nobody else, e.g.
#   go build -o /tmp/jitssh ./cmd/jitssh && sudo install -m 755 /tmp/jitssh /usr/local/bin/jitssh
# PORT defaults to 2222, DIR to a new temporary directory. Run as root, or
# as yourself: sshd started by you can log in only you, which is all this
# needs. Everything stays in DIR; sshd is stopped on exit.
set -eu

JITSSH=${1:?usage: try-stock-openssh.sh JITSSH [PORT] [DIR]}
PORT=${2:-2222}
DIR=${3:-$(mktemp -d)}
ME=$(id -un)
SSHD=$(command -v sshd || echo /usr/sbin/sshd)
say() { printf '\n== %s\n' "$*"; }

say "a CA, an empty revocation list, a bare repository in $DIR"
"$JITSSH" ca init --dir "$DIR/ca" >/dev/null
"$JITSSH" ca pubkey --dir "$DIR/ca" >"$DIR/ca.pub"
"$JITSSH" ca krl --dir "$DIR/ca" --out "$DIR/revoked.krl" 2>/dev/null
mkdir -p "$DIR/repos/demo"
git init -q --bare -b main "$DIR/repos/demo/app.git"
ssh-keygen -q -t ed25519 -N '' -f "$DIR/host_key"

say "sshd on 127.0.0.1:$PORT, trusting only certificates of that CA"
cat >"$DIR/sshd_config" <<CONFIG
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_key
PidFile $DIR/sshd.pid
UsePAM no
StrictModes no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile none
TrustedUserCAKeys $DIR/ca.pub
RevokedKeys $DIR/revoked.krl
ExposeAuthInfo yes
AcceptEnv GIT_PROTOCOL
AuthorizedPrincipalsCommandUser $ME
AuthorizedPrincipalsCommand $JITSSH principals-command --ca $DIR/ca.pub --repos $DIR/repos --krl $DIR/revoked.krl --audit-log $DIR/audit.log %t %k
CONFIG
"$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log"
trap 'kill "$(cat "$DIR/sshd.pid")" 2>/dev/null || true' EXIT INT TERM
echo "[127.0.0.1]:$PORT $(cat "$DIR/host_key.pub")" >"$DIR/known_hosts"

say "a 30-minute certificate for write on demo/app, feature branches only"
ssh-keygen -q -t ed25519 -N '' -f "$DIR/me"
"$JITSSH" ca sign --dir "$DIR/ca" --pubkey "$DIR/me.pub" --grant 'git:write:demo/app:refs/heads/feature/*' \
	--ttl 30m --key-id "$ME/try" --out "$DIR/me-cert.pub" 2>/dev/null
ssh-keygen -L -f "$DIR/me-cert.pub" | sed -n '/Key ID/p;/Valid:/p;/Principals/,/Critical/p'

export GIT_SSH_COMMAND="ssh -F /dev/null -o IdentitiesOnly=yes -i $DIR/me -o CertificateFile=$DIR/me-cert.pub -o UserKnownHostsFile=$DIR/known_hosts -o StrictHostKeyChecking=yes -o BatchMode=yes"
URL="ssh://$ME@127.0.0.1:$PORT/demo/app.git"

say "clone, commit, push to feature/try: allowed"
git clone -q "$URL" "$DIR/work" 2>/dev/null
cd "$DIR/work"
git -c user.name=try -c user.email=try@example.com commit -q --allow-empty -m "first"
git push -q origin HEAD:refs/heads/feature/try
echo "pushed refs/heads/feature/try"

say "push to main: refused, the certificate does not cover it"
if git push -q origin HEAD:refs/heads/main 2>"$DIR/refused.txt"; then
	echo "main was pushed: the grant was not enforced" >&2
	exit 1
fi
sed 's/^/  /' "$DIR/refused.txt"
echo "refused refs/heads/main"

say "what the audit log says"
"$JITSSH" audit verify --log "$DIR/audit.log" --ca "$DIR/ca.pub"
