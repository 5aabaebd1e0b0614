#!/usr/bin/env bash
# Builds the sco-agent and sco-control-plane Debian packages from this checkout with
# `dpkg-deb --build` on a staged tree (no packaging tool beyond dpkg).
#
# Usage: packaging/build-deb.sh [--profile release|debug] [--out DIR]
#   --profile release  (default) the agent from `cargo build --profile release-agent` (release
#                      with panic = "abort"), and a control plane from `cargo build --release`
#                      with --no-default-features (a server: no `up` quickstart, no agent code)
#   --profile debug    the debug binaries of `cargo build --workspace --bins`, the command the
#                      test step already ran, so CI packages them without a release build
#   --out DIR          where the .deb files go (default: target/debian)
#   --no-build         package the binaries already in the profile's target directory
# Prints the paths of the two packages on its last two lines.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

profile=release
build=yes
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=${2:?--profile needs release or debug}; shift 2 ;;
    --profile=*) profile=${1#--profile=}; shift ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --out=*) out=${1#--out=}; shift ;;
    --no-build) build=no; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "build-deb.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

for tool in cargo dpkg-deb dpkg; do
  command -v "$tool" >/dev/null 2>&1 || { echo "build-deb.sh: $tool is needed" >&2; exit 1; }
done

target_dir=${CARGO_TARGET_DIR:-$root/target}
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
out=${out:-$target_dir/debian}
case "$profile" in
  release)
    if [ "$build" = yes ]; then
      cargo build --profile release-agent -p sco-agent --bins
      cargo build --release -p sco-control-plane --no-default-features --bins
      cargo build --release -p sco-cli --bins
    fi
    bindir="$target_dir/release"
    # the agent's own profile: release with panic = "abort" (Cargo.toml)
    agentdir="$target_dir/release-agent"
    note=""
    # xz, dpkg's default: the release binaries are small and stripped.
    compress=(-Zxz)
    ;;
  debug)
    if [ "$build" = yes ]; then cargo build --workspace --bins; fi
    bindir="$target_dir/debug"
    agentdir="$bindir"
    note=" (debug build, for tests)"
    # The debug binaries are large; xz would take longer than the build saved.
    compress=(-Zgzip -z1)
    ;;
  *) echo "build-deb.sh: --profile must be release or debug, not $profile" >&2; exit 2 ;;
esac
binary_of() { if [ "$1" = sco-agent ]; then echo "$agentdir/$1"; else echo "$bindir/$1"; fi; }
for bin in sco-agent sco-control-plane scoctl; do
  [ -x "$(binary_of $bin)" ] || { echo "build-deb.sh: no $(binary_of $bin) (build it first)" >&2; exit 1; }
done

version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || { echo "build-deb.sh: no version in [workspace.package] of Cargo.toml" >&2; exit 1; }
debversion="$version-1"
arch=$(dpkg --print-architecture)
mkdir -p "$out"
out=$(cd "$out" && pwd)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# Runtime dependencies from what the binary links: the newest GLIBC_x.y symbol version it
# needs (no dpkg-shlibdeps: that wants a debian/ source tree).
depends_of() {
  local glibc
  glibc=$(grep -ao 'GLIBC_2\.[0-9]*' "$1" | sed 's/GLIBC_//' | sort -uV | tail -n1)
  printf 'libc6 (>= %s), libgcc-s1' "${glibc:-2.31}"
}

# stage PACKAGE BINARY: the common part of both trees.
stage_common() {
  local pkg=$1 dir="$stage/$1"
  install -d -m 0755 "$dir/DEBIAN" "$dir/usr/bin" "$dir/lib/systemd/system" \
    "$dir/usr/share/doc/$pkg/examples"
  install -m 0755 "$(binary_of "$pkg")" "$dir/usr/bin/$pkg"
  if [ "$profile" = debug ] && command -v strip >/dev/null 2>&1; then
    # Debug info is most of a debug binary (hundreds of MB); the code stays as tested.
    strip --strip-debug "$dir/usr/bin/$pkg"
  fi
  install -m 0644 "packaging/systemd/$pkg.service" "$dir/lib/systemd/system/$pkg.service"
  for script in postinst prerm postrm; do
    install -m 0755 "packaging/deb/$pkg/$script" "$dir/DEBIAN/$script"
  done
  install -m 0644 README.md "$dir/usr/share/doc/$pkg/README.md"
  cat > "$dir/usr/share/doc/$pkg/copyright" <<EOF
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: SmartCloudOps
License: Apache-2.0

Files: *
Copyright: SmartCloudOps authors
License: Apache-2.0
 On Debian systems the full text is in /usr/share/common-licenses/Apache-2.0.
EOF
}

# control PACKAGE DESCRIPTION: DEBIAN/control from the staged tree.
control() {
  local pkg=$1 summary=$2 long=$3 dir="$stage/$1"
  local size
  size=$(du -sk --exclude=DEBIAN "$dir" | cut -f1)
  cat > "$dir/DEBIAN/control" <<EOF
Package: $pkg
Version: $debversion
Architecture: $arch
Maintainer: SmartCloudOps <ops@smartcloudops.invalid>
Section: admin
Priority: optional
Installed-Size: $size
Depends: $(depends_of "$dir/usr/bin/$pkg")
Description: $summary$note
$long
EOF
}

# --- sco-control-plane -------------------------------------------------------------------
stage_common sco-control-plane
d="$stage/sco-control-plane"
install -d -m 0755 "$d/etc/sco-control-plane" "$d/etc/default"
# 0640: the file may carry a database password; postinst gives it to group sco.
install -m 0640 packaging/deb/control-plane.toml "$d/etc/sco-control-plane/control-plane.toml"
install -m 0644 packaging/deb/sco-control-plane.default "$d/etc/default/sco-control-plane"
install -m 0644 packaging/control-plane.example.toml "$d/usr/share/doc/sco-control-plane/examples/"
# The operator CLI ships with the server (it talks to its REST API), with the shell
# completion and man page generated from its own definition.
install -d -m 0755 "$d/usr/share/bash-completion/completions" "$d/usr/share/man/man1"
install -m 0755 "$bindir/scoctl" "$d/usr/bin/scoctl"
if [ "$profile" = debug ]; then strip --strip-debug "$d/usr/bin/scoctl"; fi
"$bindir/scoctl" completions bash > "$d/usr/share/bash-completion/completions/scoctl"
"$bindir/scoctl" man | gzip -9n > "$d/usr/share/man/man1/scoctl.1.gz"
chmod 0644 "$d/usr/share/bash-completion/completions/scoctl" "$d/usr/share/man/man1/scoctl.1.gz"
printf '%s\n' /etc/sco-control-plane/control-plane.toml /etc/default/sco-control-plane \
  > "$d/DEBIAN/conffiles"
control sco-control-plane "SmartCloudOps control plane: fleet ingest, storage and REST API" \
" Receives the metrics, anomaly events and remediation reports of SmartCloudOps
 agents over mutually authenticated TLS (gRPC), stores them in SQLite or
 PostgreSQL, enrolls agents with one-time tokens, signs and rolls out fleet
 policies, and serves a REST API with JWT authentication and roles."

# --- sco-agent ---------------------------------------------------------------------------
stage_common sco-agent
d="$stage/sco-agent"
install -d -m 0755 "$d/etc/sco-agent" "$d/etc/sco-agent/scripts"
install -m 0644 packaging/deb/agent.toml "$d/etc/sco-agent/agent.toml"
install -m 0644 packaging/agent.example.toml "$d/usr/share/doc/sco-agent/examples/"
printf '%s\n' /etc/sco-agent/agent.toml > "$d/DEBIAN/conffiles"
control sco-agent "SmartCloudOps host agent: metrics, anomaly detection, remediation" \
" Collects CPU, memory, disk, network and pressure metrics every second, scores
 them with an on-host anomaly model, streams rollups and events to the
 SmartCloudOps control plane over mutually authenticated TLS, and runs
 allowlisted remediation actions under signed fleet policies and local
 safety rules."

debs=()
for pkg in sco-control-plane sco-agent; do
  deb="$out/${pkg}_${debversion}_${arch}.deb"
  dpkg-deb --root-owner-group "${compress[@]}" --build "$stage/$pkg" "$deb" >/dev/null
  debs+=("$deb")
done
echo "built with the $profile profile:"
printf '%s\n' "${debs[@]}"
