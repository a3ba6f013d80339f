#!/usr/bin/env bash
# The raw CRIU baseline of the benchmark: the same criu binary sandlot
# runs, with the same command-line flags, driven by plain shell.
#
#   raw_criu.sh dump CRIU PID FREEZER UPPER IMAGES LAYER WORK
#   raw_criu.sh fork CRIU IMAGES LOWERDIRS MEMORY_BYTES PIDS_MAX TARGET COUNT
#   raw_criu.sh pause CRIU DIR
#   raw_criu.sh resume CRIU DIR LOWERDIRS
#   raw_criu.sh rollback CRIU DIR IMAGES LOWERDIRS
#   raw_criu.sh destroy TARGET
#
# dump: checkpoint the running tree of PID (a sandlot sandbox's PID 1)
# into IMAGES and leave it running. CRIU freezes the tree through the
# freezer cgroup FREEZER. At post-dump this script, run by CRIU as its
# action script, copies the files of the sandbox's tmpfs mounts (which
# CRIU leaves out, as sandlot has it do) into IMAGES/<key> and the overlay
# upper UPPER into LAYER. Then the file system is synced.
#
# fork: start COUNT copies of the dumped tree at once, each with what
# sandlot gives a fork. That is v1 cgroups with the same limits, an
# overlay root (a fresh upper over LOWERDIRS, the dump's LAYER first),
# its tmpfs mounts filled from IMAGES/<key>, and a new network namespace
# with loopback up. Each copy then runs /bin/true inside it with nsenter,
# which is its first exec result. Folders go under TARGET/fork-N,
# cgroups under <controller>/sandlot-bench-raw/<TARGET name>-N.
#
# pause, resume, rollback: on fork DIR (TARGET/fork-N) made by fork.
# pause dumps it into DIR/pause and ends its tree, keeping its upper.
# resume restores it from there and removes DIR/pause. rollback ends its tree and restores
# IMAGES over a fresh upper on LOWERDIRS, in the same cgroups. resume and
# rollback time until /bin/true has run in the restored tree.
#
# destroy: kill what fork started and remove its mounts, cgroups and
# TARGET.
#
# Output: key=value lines on stdout. Times are milliseconds, measured
# with bash's EPOCHREALTIME (no process start inside the timed part).
set -euo pipefail

CGROUP_PARENT=sandlot-bench-raw
CONTROLLERS=(freezer memory pids cpu devices)
# sandlot's v1 device allow-list (core/proc_cgroup.c).
DEVICES=("c 1:3 rwm" "c 1:5 rwm" "c 1:7 rwm" "c 1:8 rwm" "c 1:9 rwm"
         "c 5:0 rwm" "c 5:2 rwm" "c 136:* rwm")
NET_KEY=sandlot-net
NET_FD=200
FREEZE_TIMEOUT_S=3
# sandlot's tmpfs mounts (core/proc_mounts.c): CRIU leaves them out of the
# images, the post-dump action copies their files into <images>/<key>, and
# a restore mounts a new tmpfs with the same options there.
TMPFS_PATHS=(/dev /dev/shm /tmp /proc/acpi /proc/scsi)
TMPFS_KEYS=(dev shm tmp acpi scsi)
TMPFS_OPTIONS=(nosuid,noexec,mode=0755,size=1m nosuid,nodev,mode=1777 nosuid,nodev,mode=1777
               nosuid,nodev,noexec,size=0 nosuid,nodev,noexec,size=0)
TMPFS_READ_ONLY=(no no no yes yes)

die() { echo "raw_criu.sh: $*" >&2; exit 1; }

now_us() { local t=${EPOCHREALTIME/./}; echo "$t"; }

ms_since() { # START_US -> milliseconds with three decimals
  local d=$(( $(now_us) - $1 ))
  printf '%d.%03d' $((d / 1000)) $((d % 1000))
}

# ---- dump -----------------------------------------------------------------

# Run by CRIU with CRTOOLS_SCRIPT_ACTION set; only post-dump does work.
action() {
  [ "$CRTOOLS_SCRIPT_ACTION" = post-dump ] || return 0
  local i
  for i in $RAW_TMPFS; do
    mkdir -p "$RAW_IMAGES/${TMPFS_KEYS[$i]}"
    cp -a --one-file-system "/proc/$CRTOOLS_INIT_PID/root${TMPFS_PATHS[$i]}/." \
      "$RAW_IMAGES/${TMPFS_KEYS[$i]}"
  done
  if [ -n "${RAW_UPPER:-}" ]; then cp -a "$RAW_UPPER" "$RAW_LAYER"; fi
}

# Set TMPFS_FOUND to the indexes of the table's tmpfs mounts that the
# tree of PID has, and DUMP_EXTERNALS to their --external arguments.
find_tmpfs() { # PID
  local info i
  info=$(<"/proc/$1/mountinfo")
  TMPFS_FOUND=() DUMP_EXTERNALS=()
  for i in "${!TMPFS_PATHS[@]}"; do
    if grep -q "^[^ ]* [^ ]* [^ ]* [^ ]* ${TMPFS_PATHS[$i]} .* - tmpfs " <<<"$info"; then
      TMPFS_FOUND+=("$i")
      DUMP_EXTERNALS+=(--external "mnt[${TMPFS_PATHS[$i]}]:sandlot-${TMPFS_KEYS[$i]}")
    fi
  done
}

# The flags of every dump, after -t PID.
dump_flags() { # FREEZER NET_INODE
  DUMP_FLAGS=(--freeze-cgroup "$1" --network-lock skip --ghost-limit=67108864
              "--timeout=$FREEZE_TIMEOUT_S" --manage-cgroups=ignore --file-locks
              --tcp-established --external "net[$2]:$NET_KEY" "${DUMP_EXTERNALS[@]}"
              --action-script "$(realpath "$0")")
}

dump() {
  local criu=$1 pid=$2 freezer=$3 upper=$4 images=$5 layer=$6 work=$7
  local net
  net=$(stat -L -c %i "/proc/$pid/ns/net")
  find_tmpfs "$pid"
  dump_flags "$freezer" "$net"
  mkdir -p "$work" "$images"
  local argv=("$criu" dump -D "$images" -W "$work" -o dump.log -t "$pid" --leave-running
              "${DUMP_FLAGS[@]}")
  echo "criu_argv=${argv[*]}"
  local start
  start=$(now_us)
  RAW_IMAGES=$images RAW_TMPFS="${TMPFS_FOUND[*]}" RAW_UPPER=$upper RAW_LAYER=$layer \
    "${argv[@]}" >"$work/criu.out" 2>&1 || die "criu dump failed, see $work/dump.log"
  echo "dump_ms=$(ms_since "$start")"
  sync -f "$images" "$layer"
  echo "total_ms=$(ms_since "$start")"
}

# ---- fork -----------------------------------------------------------------

make_cgroups() { # NAME MEMORY_BYTES PIDS_MAX
  local name=$1 c dir
  for c in "${CONTROLLERS[@]}"; do
    mkdir -p "/sys/fs/cgroup/$c/$CGROUP_PARENT"
    mkdir "/sys/fs/cgroup/$c/$CGROUP_PARENT/$name"
  done
  dir=/sys/fs/cgroup/memory/$CGROUP_PARENT/$name
  echo "$2" >"$dir/memory.limit_in_bytes"
  [ -e "$dir/memory.memsw.limit_in_bytes" ] && echo "$2" >"$dir/memory.memsw.limit_in_bytes"
  echo "$3" >"/sys/fs/cgroup/pids/$CGROUP_PARENT/$name/pids.max"
  dir=/sys/fs/cgroup/devices/$CGROUP_PARENT/$name
  echo a >"$dir/devices.deny"
  local rule
  for rule in "${DEVICES[@]}"; do echo "$rule" >"$dir/devices.allow"; done
}

# Mount the overlay root of a fork at DIR/root: DIR/upper (kept when it
# exists) over LOWERDIRS.
mount_root() { # DIR LOWERDIRS
  local dir=$1
  mkdir -p "$dir/upper" "$dir/work" "$dir/root"
  mount -t overlay overlay -o "lowerdir=$2,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
}

# Mount a tmpfs for each tmpfs copy in IMAGES at DIR/wd/<key>, filled
# from the copy, and set RESTORE_EXTERNALS to their --external arguments.
mount_tmpfs() { # IMAGES DIR
  local i mnt
  RESTORE_EXTERNALS=() TMPFS_MOUNTED=()
  for i in "${!TMPFS_KEYS[@]}"; do
    [ -d "$1/${TMPFS_KEYS[$i]}" ] || continue
    mnt=$2/wd/${TMPFS_KEYS[$i]}
    mkdir -p "$mnt"
    mount -t tmpfs -o "${TMPFS_OPTIONS[$i]}" tmpfs "$mnt"
    cp -a "$1/${TMPFS_KEYS[$i]}/." "$mnt/"
    if [ "${TMPFS_READ_ONLY[$i]}" = yes ]; then mount -o remount,ro "$mnt"; fi
    TMPFS_MOUNTED+=("$mnt")
    RESTORE_EXTERNALS+=(--external "mnt[sandlot-${TMPFS_KEYS[$i]}]:$mnt")
  done
}

# Restore IMAGES into the prepared fork DIR (cgroups NAME, root mounted)
# and set RESTORED_PID and RESTORE_MS.
restore_tree() { # CRIU IMAGES DIR NAME PRINT_ARGV
  local criu=$1 images=$2 dir=$3 name=$4
  rm -rf "$dir/wd" && mkdir -p "$dir/wd"
  mount_tmpfs "$images" "$dir"
  local procs=() c
  for c in "${CONTROLLERS[@]}"; do procs+=("/sys/fs/cgroup/$c/$CGROUP_PARENT/$name/cgroup.procs"); done
  local argv=("$criu" restore -D "$images" -W "$dir/wd" -o restore.log --root "$dir/root" -d
              --pidfile "$dir/wd/restore.pid" --inherit-fd "fd[$NET_FD]:$NET_KEY"
              --manage-cgroups=ignore --file-locks --tcp-established "${RESTORE_EXTERNALS[@]}")
  if [ "$5" = yes ]; then echo "criu_argv=${argv[*]}"; fi
  local start
  start=$(now_us)
  # The new network namespace and the cgroups belong to the shell that
  # execs CRIU, so the restored tree starts in them.
  RAW_PROCS="${procs[*]}" unshare --net -- bash -c '
    ip link set lo up
    for f in $RAW_PROCS; do echo $$ >"$f"; done
    exec "$@" 200</proc/self/ns/net' bash "${argv[@]}" \
    >"$dir/wd/criu.out" 2>&1 || die "criu restore failed, see $dir/wd/restore.log"
  RESTORE_MS=$(ms_since "$start")
  local mnt
  for mnt in "${TMPFS_MOUNTED[@]}"; do umount -l "$mnt"; done
  RESTORED_PID=$(<"$dir/wd/restore.pid")
}

first_exec() { # PID NAME
  nsenter -t "$1" -m -u -i -n -p -r -w /bin/true || die "first exec in fork $2 failed"
}

# Prepare and restore one fork, then run its first command.
fork_one() { # CRIU IMAGES LOWERDIRS MEMORY_BYTES PIDS_MAX DIR NAME PRINT_ARGV
  local criu=$1 images=$2 lowers=$3 dir=$6 name=$7
  local start
  start=$(now_us)
  mount_root "$dir" "$lowers"
  make_cgroups "$name" "$4" "$5"
  restore_tree "$criu" "$images" "$dir" "$name" "$8"
  first_exec "$RESTORED_PID" "$name"
  echo "fork=$name pid=$RESTORED_PID restore_ms=$RESTORE_MS first_exec_ms=$(ms_since "$start")" \
       "memory_cgroup=/sys/fs/cgroup/memory/$CGROUP_PARENT/$name"
}

fork() {
  local criu=$1 images=$2 lowers=$3 memory=$4 pids=$5 target=$6 count=$7
  mkdir -p "$target"
  local base start i jobs=()
  base=$(basename "$target")
  start=$(now_us)
  for ((i = 1; i <= count; i++)); do
    fork_one "$criu" "$images" "$lowers" "$memory" "$pids" "$target/fork-$i" "$base-$i" \
      "$([ "$i" -eq 1 ] && echo yes || echo no)" &
    jobs+=($!)
  done
  local failed=0 job
  for job in "${jobs[@]}"; do wait "$job" || failed=1; done
  [ $failed -eq 0 ] || die "a fork failed"
  echo "total_ms=$(ms_since "$start")"
}

# ---- pause, resume, rollback ------------------------------------------------

# The cgroup name of fork DIR (TARGET/fork-N is <TARGET name>-N).
fork_name() { # DIR
  echo "$(basename "$(dirname "$1")")-${1##*/fork-}"
}

# Dump fork DIR into DIR/pause and end its tree; its upper stays.
pause() { # CRIU DIR
  local criu=$1 dir=$2 name pid net
  name=$(fork_name "$dir")
  pid=$(<"$dir/wd/restore.pid")
  net=$(stat -L -c %i "/proc/$pid/ns/net")
  find_tmpfs "$pid"
  dump_flags "/sys/fs/cgroup/freezer/$CGROUP_PARENT/$name" "$net"
  rm -rf "$dir/pause" "$dir/pause-wd"
  mkdir -p "$dir/pause" "$dir/pause-wd"
  local start
  start=$(now_us)
  RAW_IMAGES=$dir/pause RAW_TMPFS="${TMPFS_FOUND[*]}" \
    "$criu" dump -D "$dir/pause" -W "$dir/pause-wd" -o dump.log -t "$pid" "${DUMP_FLAGS[@]}" \
    >"$dir/pause-wd/criu.out" 2>&1 || die "criu dump failed, see $dir/pause-wd/dump.log"
  sync -f "$dir/pause"
  # sandlot's pause also releases the sandbox's mounts before it returns.
  umount -l "$dir/root"
  echo "pause_ms=$(ms_since "$start")"
}

# Restore fork DIR from DIR/pause with its own upper, remove the pause's
# images (as sandlot's monitor does once the tree runs), and wait until
# the first command has exited.
resume() { # CRIU DIR LOWERDIRS
  local criu=$1 dir=$2 name start
  name=$(fork_name "$dir")
  start=$(now_us)
  mount_root "$dir" "$3"
  restore_tree "$criu" "$dir/pause" "$dir" "$name" no
  rm -rf "$dir/pause"
  first_exec "$RESTORED_PID" "$name"
  echo "resume_ms=$(ms_since "$start")"
}

# Put fork DIR back to the dump IMAGES: end its tree, a fresh upper over
# LOWERDIRS, restore in the same cgroups, until its first command has
# exited.
rollback() { # CRIU DIR IMAGES LOWERDIRS
  local criu=$1 dir=$2 name start
  name=$(fork_name "$dir")
  start=$(now_us)
  kill_cgroup "/sys/fs/cgroup/freezer/$CGROUP_PARENT/$name/cgroup.procs"
  umount -l "$dir/root"
  rm -rf "$dir/upper" "$dir/work"
  mount_root "$dir" "$4"
  restore_tree "$criu" "$3" "$dir" "$name" no
  first_exec "$RESTORED_PID" "$name"
  echo "rollback_ms=$(ms_since "$start")"
}

# ---- destroy --------------------------------------------------------------

kill_cgroup() { # cgroup.procs file
  local procs=$1 pids pid round
  for ((round = 0; round < 500; round++)); do
    # cgroup files report size 0, so read them to see whether any pid is left.
    pids=$(<"$procs")
    [ -n "$pids" ] || return 0
    for pid in $pids; do kill -9 "$pid" 2>/dev/null || true; done
    sleep 0.01
  done
  die "tasks left in $procs"
}

destroy() {
  local target=$1 dir name c key
  [ -d "$target" ] || return 0
  for dir in "$target"/fork-*; do
    [ -d "$dir" ] || continue
    name=$(basename "$target")-${dir##*/fork-}
    [ -d "/sys/fs/cgroup/freezer/$CGROUP_PARENT/$name" ] &&
      kill_cgroup "/sys/fs/cgroup/freezer/$CGROUP_PARENT/$name/cgroup.procs"
    for c in "${CONTROLLERS[@]}"; do
      [ -d "/sys/fs/cgroup/$c/$CGROUP_PARENT/$name" ] && rmdir "/sys/fs/cgroup/$c/$CGROUP_PARENT/$name"
    done
    for key in "${TMPFS_KEYS[@]}"; do
      if mountpoint -q "$dir/wd/$key"; then umount -l "$dir/wd/$key"; fi
    done
    if mountpoint -q "$dir/root"; then umount -l "$dir/root"; fi
  done
  rm -rf --one-file-system "$target"
  # The parents go once no other fork is left in them.
  for c in "${CONTROLLERS[@]}"; do rmdir "/sys/fs/cgroup/$c/$CGROUP_PARENT" 2>/dev/null || true; done
}

if [ -n "${CRTOOLS_SCRIPT_ACTION:-}" ]; then
  action
  exit 0
fi
command=${1:-}
shift || true
case $command in
  dump) [ $# -eq 7 ] || die "usage: dump CRIU PID FREEZER UPPER IMAGES LAYER WORK"; dump "$@" ;;
  fork) [ $# -eq 7 ] || die "usage: fork CRIU IMAGES LOWERDIRS MEMORY_BYTES PIDS_MAX TARGET COUNT"; fork "$@" ;;
  pause) [ $# -eq 2 ] || die "usage: pause CRIU DIR"; pause "$@" ;;
  resume) [ $# -eq 3 ] || die "usage: resume CRIU DIR LOWERDIRS"; resume "$@" ;;
  rollback) [ $# -eq 4 ] || die "usage: rollback CRIU DIR IMAGES LOWERDIRS"; rollback "$@" ;;
  destroy) [ $# -eq 1 ] || die "usage: destroy TARGET"; destroy "$@" ;;
  *) die "usage: raw_criu.sh dump|fork|pause|resume|rollback|destroy ARGS (see the top of this file)" ;;
esac
