#!/usr/bin/env bash
# Usage: deploy/install.sh [options]
#
# Installs smartcopy from a checkout (default: the one holding this script) or a source
# tarball into PREFIX, plus a `smartcopy` wrapper in BINDIR. Safe to re-run: every run builds
# a fresh copy in a staging directory next to PREFIX and swaps it in at the end, so a failed
# build leaves the installed version untouched.
#
#   --prefix DIR    install directory (default /opt/smartcopy)
#   --bindir DIR    where the `smartcopy` wrapper goes (default /usr/local/bin)
#   --from PATH     checkout directory or .tar/.tar.gz/.tgz of one (git archive works)
#   --node PATH     node binary the wrapper runs (default: `node` on PATH; needs >= 20)
#   --agent         also set up the TCP agent service: system user `smartcopy`,
#                   /srv/smartcopy, /etc/smartcopy/token (generated once, never replaced),
#                   the systemd unit and the sysctl tuning; restarts the agent if running
#   --uninstall     remove PREFIX and the wrapper; with --agent also the unit and the sysctl
#                   file (keeps /etc/smartcopy, /srv/smartcopy and the user: that is data)
#   -h, --help      this text
#
# Build: `npm ci --ignore-scripts` (needs the npm registry or a warm npm cache; set
# npm_config_offline=true to forbid network), `tsc -b` of the workspaces, then
# `npm prune --omit=dev`, so only runtime dependencies end up in PREFIX.
set -euo pipefail

PREFIX=/opt/smartcopy
BINDIR=/usr/local/bin
HERE=$(cd "$(dirname "$0")" && pwd)
FROM=$(dirname "$HERE")
NODE=
AGENT=0
UNINSTALL=0
MARKER=.smartcopy-install
WRAPPER_TAG='# smartcopy wrapper, written by deploy/install.sh'

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "install.sh: $*" >&2; exit 1; }
say() { echo "== $*"; }

while (($#)); do
  case $1 in
    --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
    --prefix=*) PREFIX=${1#*=}; shift ;;
    --bindir) BINDIR=${2:?--bindir needs a directory}; shift 2 ;;
    --bindir=*) BINDIR=${1#*=}; shift ;;
    --from) FROM=${2:?--from needs a path}; shift 2 ;;
    --from=*) FROM=${1#*=}; shift ;;
    --node) NODE=${2:?--node needs a path}; shift 2 ;;
    --node=*) NODE=${1#*=}; shift ;;
    --agent) AGENT=1; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done

# normalise to absolute paths without a trailing slash: PREFIX ends up in the wrapper and
# in `rm -rf`, so it must be exactly what we think it is
abspath() { local p=$1; [[ $p == /* ]] || p=$PWD/$p; while [[ $p == */ && $p != / ]]; do p=${p%/}; done; echo "$p"; }
PREFIX=$(abspath "$PREFIX")
BINDIR=$(abspath "$BINDIR")
case $PREFIX in
  / | /usr | /usr/local | /opt | /etc | /var | /srv | /home | /root | /tmp) die "refusing --prefix $PREFIX: give smartcopy its own directory" ;;
esac

UNIT_DST=/etc/systemd/system/smartcopy-agent.service
SYSCTL_DST=/etc/sysctl.d/90-smartcopy.conf
have_systemd() { [[ -d /run/systemd/system ]] && command -v systemctl > /dev/null; }

# A directory we may replace: absent, empty, or installed by us earlier (has the marker).
ours_or_empty() {
  [[ ! -e $1 ]] || [[ -f $1/$MARKER ]] || [[ -d $1 && -z $(ls -A "$1") ]]
}

if ((UNINSTALL)); then
  ours_or_empty "$PREFIX" || die "$PREFIX was not installed by this script (no $MARKER); not removing it"
  if [[ -e $PREFIX ]]; then rm -rf "$PREFIX" && say "removed $PREFIX"; fi
  if [[ -f $BINDIR/smartcopy ]] && grep -qF "$WRAPPER_TAG" "$BINDIR/smartcopy"; then
    rm -f "$BINDIR/smartcopy" && say "removed $BINDIR/smartcopy"
  fi
  if ((AGENT)); then
    if have_systemd && systemctl is-enabled --quiet smartcopy-agent 2> /dev/null; then
      systemctl disable --now smartcopy-agent
    fi
    rm -f "$UNIT_DST" "$SYSCTL_DST"
    have_systemd && systemctl daemon-reload
    say "removed the unit and sysctl file; kept /etc/smartcopy, /srv/smartcopy and user smartcopy"
  fi
  exit 0
fi

# ---- checks
if [[ -z $NODE ]]; then NODE=$(command -v node) || die "node not found on PATH; install Node.js >= 20 or pass --node"; fi
NODE=$(abspath "$NODE")
[[ -x $NODE ]] || die "--node $NODE is not executable"
major=$("$NODE" -p 'process.versions.node.split(".")[0]')
((major >= 20)) || die "Node.js $("$NODE" --version) is too old; need >= 20"
NPM=$(dirname "$NODE")/npm
[[ -x $NPM ]] || NPM=$(command -v npm) || die "npm not found"
ours_or_empty "$PREFIX" || die "$PREFIX exists and was not installed by this script (no $MARKER); pick another --prefix or remove it"
((AGENT == 0)) || [[ $(id -u) == 0 ]] || die "--agent needs root"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/smartcopy-install.XXXXXX")
STAGE=
cleanup() {
  rm -rf "$WORK"
  [[ -z $STAGE ]] || rm -rf "$STAGE"
}
trap cleanup EXIT

# ---- source tree
if [[ -f $FROM ]]; then
  say "unpacking $FROM"
  mkdir "$WORK/src"
  tar -xf "$FROM" -C "$WORK/src"
  SRC=$WORK/src
  if [[ ! -f $SRC/package.json ]]; then # git archive --prefix=name/ and the like
    shopt -s nullglob
    tops=("$SRC"/*/package.json)
    shopt -u nullglob
    ((${#tops[@]} == 1)) || die "$FROM: no package.json at the top or in a single top directory"
    SRC=$(dirname "${tops[0]}")
  fi
elif [[ -d $FROM ]]; then
  SRC=$(cd "$FROM" && pwd)
else
  die "--from $FROM: no such file or directory"
fi
[[ -f $SRC/package.json && -f $SRC/package-lock.json ]] || die "$SRC: not a smartcopy checkout (package.json and package-lock.json needed)"
read -r -a WORKSPACES <<< "$(cd "$SRC" && "$NODE" -p 'require("./package.json").workspaces.join(" ")')"
for ws in "${WORKSPACES[@]}"; do [[ -f $SRC/$ws/package.json ]] || die "$SRC: workspace $ws missing"; done
[[ -f $SRC/client/bin/smartcopy.js ]] || die "$SRC: client/bin/smartcopy.js missing"
VERSION=$(cd "$SRC" && "$NODE" -p 'require("./client/package.json").version')

# ---- build in a staging directory beside PREFIX (same filesystem, so the swap is a rename)
mkdir -p "$(dirname "$PREFIX")"
STAGE=$(mktemp -d "$(dirname "$PREFIX")/.smartcopy-stage.XXXXXX")
say "staging smartcopy $VERSION from $SRC in $STAGE"
# Only what runs: workspace sources without tests, build output or installed modules.
extras=()
for f in tsconfig.base.json tsconfig.json README.md LICENSE deploy; do [[ -e $SRC/$f ]] && extras+=("$f"); done
tar -C "$SRC" --exclude=node_modules --exclude=dist --exclude=.git --exclude='*.tsbuildinfo' \
  --no-wildcards-match-slash --exclude='./*/test' -cf - ./package.json ./package-lock.json "${extras[@]/#/./}" "${WORKSPACES[@]/#/./}" |
  tar -C "$STAGE" -xf -
(
  cd "$STAGE"
  PATH=$(dirname "$NODE"):$PATH
  export PATH npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
  # --ignore-scripts: the root `prepare` would build the cross-package tests we did not copy
  say "npm ci"
  "$NPM" ci --ignore-scripts --no-audit --no-fund
  say "tsc -b ${WORKSPACES[*]}"
  "$NODE" node_modules/typescript/bin/tsc -b "${WORKSPACES[@]}" || die "TypeScript build failed; nothing was installed"
  # one bundled file for the CLI and its workers: starts several times faster than the module tree
  say "bundle"
  "$NODE" client/scripts/bundle.mjs || die "bundling the CLI failed; nothing was installed"
  say "npm prune --omit=dev"
  "$NPM" prune --omit=dev --ignore-scripts --no-audit --no-fund
  "$NODE" -e 'import(process.argv[1])' "$STAGE/client/dist/bundle/smartcopy.js" ||
    die "the built CLI does not load"
)
rm -f "$STAGE"/tsconfig.json # references the tests we left out; only the build needed it
printf 'version=%s\nsource=%s\nnode=%s\ndate=%s\n' "$VERSION" "$FROM" "$NODE" "$(date -u +%FT%TZ)" > "$STAGE/$MARKER"
chmod -R u=rwX,go=rX "$STAGE"

# ---- swap in
OLD=
if [[ -e $PREFIX ]]; then
  OLD=$(dirname "$PREFIX")/.smartcopy-old.$$
  mv "$PREFIX" "$OLD"
fi
mv "$STAGE" "$PREFIX"
STAGE=
[[ -z $OLD ]] || rm -rf "$OLD"
say "installed $PREFIX"

mkdir -p "$BINDIR"
tmp=$(mktemp "$BINDIR/.smartcopy.XXXXXX")
cat > "$tmp" << EOF
#!/bin/sh
$WRAPPER_TAG ($PREFIX)
exec '$NODE' '$PREFIX/client/bin/smartcopy.js' "\$@"
EOF
chmod 0755 "$tmp"
mv "$tmp" "$BINDIR/smartcopy"
say "wrapper $BINDIR/smartcopy -> $NODE $PREFIX/client/bin/smartcopy.js"

# ---- agent service
if ((AGENT)); then
  if ! id smartcopy > /dev/null 2>&1; then
    useradd --system --user-group --home-dir /srv/smartcopy --no-create-home \
      --shell /usr/sbin/nologin --comment 'smartcopy agent' smartcopy
    say "created system user smartcopy"
  fi
  [[ -d /srv/smartcopy ]] || install -d -o smartcopy -g smartcopy -m 0750 /srv/smartcopy
  install -d -o root -g smartcopy -m 0750 /etc/smartcopy
  if [[ ! -s /etc/smartcopy/token ]]; then
    (umask 027 && head -c 32 /dev/urandom | base64 > /etc/smartcopy/token)
    chown root:smartcopy /etc/smartcopy/token
    chmod 0640 /etc/smartcopy/token
    say "generated /etc/smartcopy/token (give the same file to clients: --token-file)"
  fi
  sed -e "s#/usr/local/bin/smartcopy #$BINDIR/smartcopy #" -e "s#file:///opt/smartcopy/#file://$PREFIX/#" \
    "$PREFIX/deploy/systemd/smartcopy-agent.service" > "$WORK/unit"
  install -m 0644 "$WORK/unit" "$UNIT_DST"
  install -m 0644 "$PREFIX/deploy/sysctl/90-smartcopy.conf" "$SYSCTL_DST"
  sysctl -q -p "$SYSCTL_DST" || echo "warning: some sysctl settings were not applied (container, or missing module); see $SYSCTL_DST" >&2
  if have_systemd; then
    systemctl daemon-reload
    systemctl try-restart smartcopy-agent
    if systemctl is-enabled --quiet smartcopy-agent 2> /dev/null; then
      say "agent unit updated (restarted if it was running)"
    else
      say "agent unit installed; start it with: systemctl enable --now smartcopy-agent"
    fi
  else
    say "no running systemd: unit copied to $UNIT_DST but not loaded"
  fi
fi
"$BINDIR/smartcopy" --version > /dev/null 2>&1 || echo "warning: '$BINDIR/smartcopy --version' failed" >&2
say "done: smartcopy $VERSION"
