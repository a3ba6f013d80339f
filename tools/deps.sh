#!/usr/bin/env bash
# Install what sandlot needs on a fresh Debian 12 machine and build CRIU.
# Idempotent: packages already present and a CRIU build already in
# deps/criu are left alone. Usage: tools/deps.sh [packages|criu|all]
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
deps=${SANDLOT_DEPS:-$top/deps}
what=${1:-all}

# Packages the build, the tests and CRIU's own build need, all from
# Debian 12 (bookworm).
packages=(
  build-essential cmake pkg-config
  liblua5.4-dev lua5.4 libuv1-dev lua-luv-dev libsqlite3-dev sqlite3 libjansson-dev
  libreadline-dev tmux mmdebstrap
  lua-busted
  qemu-system-x86 qemu-utils busybox-static e2fsprogs
  nftables
  # CRIU's build dependencies.
  libprotobuf-dev libprotobuf-c-dev protobuf-c-compiler protobuf-compiler
  python3-protobuf libnl-3-dev libnet1-dev libcap-dev libbsd-dev
  libnftables-dev libgnutls28-dev uuid-dev dpkg-dev
)

log() { printf 'deps: %s\n' "$*" >&2; }

install_packages() {
  local missing=()
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get -o DPkg::Lock::Timeout=600 update -qq || log "apt-get update failed; trying the cached package lists"
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# A private apt configuration that only knows source packages of newer
# Debian suites, so the host's own sources and lists stay untouched.
apt_src() {
  local root=$deps/apt
  mkdir -p "$root/lists/partial" "$root/cache/archives/partial" "$root/parts"
  cat >"$root/sources.list" <<SRC
deb-src http://deb.debian.org/debian trixie main
deb-src http://deb.debian.org/debian sid main
SRC
  "$@" -o Dir::Etc::SourceList="$root/sources.list" \
       -o Dir::Etc::SourceParts="$root/parts" \
       -o Dir::State::Lists="$root/lists" -o Dir::Cache="$root/cache"
}

criu_ok() {
  local bin=$deps/criu/sbin/criu
  [ -x "$bin" ] && "$bin" --version >/dev/null 2>&1
}

# Try each CRIU version >= 4.1 that the source suites serve, newest first,
# and keep the first one that builds.
build_criu() {
  if criu_ok; then return 0; fi
  apt_src apt-get update -qq
  local versions
  versions=$(apt_src apt-cache showsrc criu | awk '/^Version:/ {print $2}' | sort -rV | uniq)
  local v
  for v in $versions; do
    if ! dpkg --compare-versions "$v" ge 4.1; then continue; fi
    log "building CRIU $v"
    if build_criu_version "$v"; then
      echo "$v" >"$deps/criu/VERSION"
      log "CRIU $v installed in $deps/criu"
      return 0
    fi
    log "CRIU $v failed to build"
  done
  log "error: no CRIU >= 4.1 from Debian trixie or sid built; see the messages above"
  return 1
}

# Print the SHA-256 that the Sources index lists for one file of a version.
source_sha256() {
  local v=$1 file=$2
  apt_src apt-cache showsrc criu |
    awk -v v="$v" -v f="$file" '
      /^Package:/ {mine=0} /^Version:/ {mine=($2 == v)}
      /^Checksums-Sha256:/ {on=mine; next} /^[^ ]/ {on=0}
      on && $3 == f {print $1; exit}'
}

# The mirror may lack the Debian packaging files (.dsc, .debian.tar.xz) of a
# version while it serves the upstream tarball, so build from the upstream
# tarball alone after checking it against the Sources index. Debian's patches
# are not needed for the criu binary.
build_criu_version() {
  local v=$1 src=$deps/src/criu-$v upstream=${1%-*}
  local tarball=criu_$upstream.orig.tar.xz
  rm -rf "$src" && mkdir -p "$src"
  (cd "$src" && apt_src apt-get source -qq --download-only "criu=$v" >/dev/null 2>&1) || true
  [ -f "$src/$tarball" ] || { log "download of $tarball failed"; return 1; }
  local want got
  want=$(source_sha256 "$v" "$tarball")
  got=$(sha256sum "$src/$tarball" | awk '{print $1}')
  [ -n "$want" ] && [ "$want" = "$got" ] || { log "checksum mismatch for $tarball"; return 1; }
  mkdir -p "$src/tree" && tar -xJf "$src/$tarball" -C "$src/tree" --strip-components=1
  # Build only the criu binary: sandlot runs it by absolute path, so neither
  # libcriu nor the docs and Python tools are needed.
  make -C "$src/tree" -j"$(nproc)" criu >"$src/build.log" 2>&1 || {
    tail -n 20 "$src/build.log" >&2
    return 1
  }
  rm -rf "$deps/criu" && mkdir -p "$deps/criu/sbin"
  install -m 0755 "$src/tree/criu/criu" "$deps/criu/sbin/criu"
}

case $what in
  packages) install_packages ;;
  criu) build_criu ;;
  all) install_packages; build_criu ;;
  *) echo "usage: $0 [packages|criu|all]" >&2; exit 2 ;;
esac
