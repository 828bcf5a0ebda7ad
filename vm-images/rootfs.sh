#!/usr/bin/env bash
# Builds (once) and caches a real Debian root file system for tests and
# benchmarks:
#
#   bash vm-images/rootfs.sh NAME     prints the rootfs path as its last stdout line
#
# Images are cached in ${TESSERA_VM_IMAGES:-/var/cache/tessera/vm-images}/NAME/:
#   rootfs/      the root file system
#   info         how and when it was built
# A build runs in a temporary directory next to the cache and is renamed into
# place only when complete, so an interrupted build never looks cached. Two
# builds of one image at the same time wait for each other (flock).
# Progress and logs go to stderr. Needs root (mmdebstrap --mode=root).
#
# To add an image: add it to IMAGES and a case to recipe() below that builds
# into "$1" (a fresh, empty directory: the tree goes in "$1/rootfs", any other
# artefact, such as a raw disk image, next to it).
set -euo pipefail

SUITE=bookworm
CACHE=${TESSERA_VM_IMAGES:-/var/cache/tessera/vm-images}
SELF=$(realpath "${BASH_SOURCE[0]}")

log() { echo "rootfs.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# The images recipe() knows, for usage().
declare -A IMAGES=(
  [minbase]="mmdebstrap --variant=minbase: the Essential packages and apt"
  [update]="minbase plus python3-minimal, curl and ca-certificates: an update that shares most of minbase"
  [disk]="a VM disk: rootfs/disk.raw, a sparse 5 GiB raw ext4 image holding the update rootfs"
)

usage() {
  echo "usage: bash vm-images/rootfs.sh NAME" >&2
  echo "Builds (once) and caches a Debian $SUITE root file system in $CACHE/NAME/rootfs" >&2
  echo "and prints that path. Images:" >&2
  local image
  for image in "${!IMAGES[@]}"; do printf '  %-10s %s\n' "$image" "${IMAGES[$image]}" >&2; done
  exit 2
}

# The Debian packages a recipe needs on the host; installed if missing.
ensure_packages() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# The host's apt sources for $SUITE (release, -updates, -security), as
# one-line "deb URI SUITE main" entries for mmdebstrap: the chroot downloads
# from the same mirror the host uses (deb822 and one-line sources.list alike;
# apt-get indextargets reads both). Falls back to deb.debian.org.
host_sources() {
  local lines
  lines=$(apt-get indextargets --format '$(IDENTIFIER) $(COMPONENT) $(RELEASE) $(REPO_URI)' 2>/dev/null |
    awk -v s="$SUITE" '$1 == "Packages" && $2 == "main" && !seen[$3 " " $4]++ {
      rank = $3 == s ? 1 : $3 == s "-updates" ? 2 : $3 == s "-security" ? 3 : 0
      if (rank) print rank, "deb " $4 " " $3 " main" }' |
    sort -n | cut -d' ' -f2-)
  if ! grep -q " $SUITE main\$" <<<"$lines"; then
    log "the host's apt sources have no $SUITE main; using deb.debian.org"
    lines="deb http://deb.debian.org/debian $SUITE main
deb http://deb.debian.org/debian $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main"
  fi
  echo "$lines"
}

# mmdebstrap into "$1/rootfs", extra arguments passed through (--include=...).
debootstrap_into() {
  local out=$1 sources
  shift
  ensure_packages mmdebstrap debian-archive-keyring mount
  mapfile -t sources < <(host_sources)
  log "mmdebstrap from: ${sources[*]}"
  printf 'source %s\n' "${sources[@]}" >>"$out/info"
  echo "mmdebstrap $(mmdebstrap --version 2>&1 | awk '{print $2}') $*" >>"$out/info"
  mmdebstrap --mode=root --format=directory "$@" "$SUITE" "$out/rootfs" "${sources[@]}" >&2
}

# Builds image "$name" into the empty directory "$1".
recipe() {
  local out=$1
  case $name in
    minbase)
      debootstrap_into "$out" --variant=minbase
      ;;
    update)
      debootstrap_into "$out" --variant=minbase --include=python3-minimal,curl,ca-certificates
      ;;
    disk)
      # Larger than 4 GiB and sparse, as VM disks are: mkfs.ext4 -d copies
      # the tree in and leaves the free blocks as holes.
      local tree
      tree=$(bash "$SELF" update | tail -n1)
      ensure_packages e2fsprogs
      mkdir "$out/rootfs"
      truncate -s 5G "$out/rootfs/disk.raw"
      mkfs.ext4 -q -F -L tessera-disk -E root_owner=0:0 -d "$tree" "$out/rootfs/disk.raw" >&2
      ;;
    *)
      usage
      ;;
  esac
}

# Unmounts whatever an interrupted build left mounted under $1 (mmdebstrap
# mounts /proc, /sys and /dev in the chroot while it runs), deepest first,
# then removes it without crossing into anything still mounted.
remove_tree() {
  local dir=$1 mountpoint
  [[ -e $dir ]] || return 0
  while read -r mountpoint; do
    umount -l "$mountpoint" 2>/dev/null || true
  done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  rm -rf --one-file-system -- "$dir"
}

(($# == 1)) || usage
name=$1
# An unknown name is a usage error before anything is touched.
[[ $name =~ ^[a-z0-9][a-z0-9._-]*$ && -v IMAGES[$name] ]] || usage

target=$CACHE/$name
if [[ -d $target/rootfs ]]; then
  echo "$target/rootfs"
  exit 0
fi
[[ $(id -u) == 0 ]] || die "building $name needs root (mmdebstrap --mode=root)"

mkdir -p "$CACHE"
exec 9>"$CACHE/.$name.lock"
if ! flock -n 9; then
  log "another build of $name is running; waiting for it"
  flock 9
fi
if [[ -d $target/rootfs ]]; then  # built while we waited
  echo "$target/rootfs"
  exit 0
fi
# Leftovers of builds that were killed before their trap could run.
for stale in "$CACHE/.$name.tmp."*; do
  [[ -e $stale ]] || continue
  log "removing the leftovers of an interrupted build: $stale"
  remove_tree "$stale"
done
[[ ! -e $target ]] || die "$target exists but has no rootfs/; remove it to rebuild"

work=$(mktemp -d "$CACHE/.$name.tmp.XXXXXX")
chmod 755 "$work"  # apt downloads as _apt, which must reach rootfs/var/lib/apt
trap 'remove_tree "$work"' EXIT
trap 'exit 130' INT TERM HUP
log "building $name in $work (about 20 s with a fast mirror)"
start=$(date +%s.%N)
echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname) by $SELF" >"$work/info"
recipe "$work"
[[ -d $work/rootfs ]] || die "the $name recipe made no rootfs/"
seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }')
echo "seconds $seconds" >>"$work/info"
echo "size $(du -sb "$work/rootfs" | cut -f1) bytes, $(find "$work/rootfs" | wc -l) entries" >>"$work/info"
mv -T "$work" "$target"
trap - EXIT
log "built $name in ${seconds}s: $target/rootfs"
echo "$target/rootfs"
