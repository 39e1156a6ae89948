#!/bin/bash
# The supervisor lab: drive berth-containerd with the real `ctr` (Debian's containerd
# package), then SIGKILL it under a running container and start it again.
#
#   book/labs/supervisor-lab.sh
#
# Run it as root from the repository, after `cargo xtask setup`. It builds
# berth-containerd, berth-shim and berth-runc, starts berth-containerd on a fresh
# root under /tmp, imports the test image and runs a container through berth-shim
# that prints a line every 100 ms into a log file. Then it kills the supervisor, starts
# it again, and checks that the task is back: same pid, still running, every line in
# its log once and in order, and that ctr can still exec in it and stop it. Every
# command is printed with a `$` before it; the last line says what happened, and the
# script exits 0 only if everything held, so the tests run it too. Set LAB_BIN_DIR to
# a directory holding the three binaries already built.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "run this lab as root: containers need namespaces and cgroups" >&2
    exit 2
fi
repo="$(cd "$(dirname "$0")/../.." && pwd)"
image="$repo/target/berth-images/busybox.tar"
if [ ! -f "$image" ]; then
    echo "no test image at $image; run \`cargo xtask setup\` first" >&2
    exit 2
fi
if ! command -v ctr >/dev/null; then
    echo "no ctr on PATH; run \`cargo xtask setup\` (it installs Debian's containerd)" >&2
    exit 2
fi
if [ -z "${LAB_BIN_DIR:-}" ]; then
    cargo build --quiet --manifest-path "$repo/Cargo.toml" \
        -p berth-containerd -p berth-shim -p berth-runc
    LAB_BIN_DIR="$repo/target/debug"
fi
root="$(mktemp -d /tmp/supervisor-lab.XXXXXX)"
socket="$root/containerd.sock"
# containerd finds a runtime's shim by name on its PATH: io.containerd.berth.v2 is
# containerd-shim-berth-v2, which berth-shim is; berth-shim finds berth-runc beside it.
mkdir -p "$root/bin"
ln -s "$LAB_BIN_DIR/berth-shim" "$root/bin/containerd-shim-berth-v2"
ln -s "$LAB_BIN_DIR/berth-runc" "$root/bin/berth-runc"
export PATH="$root/bin:$PATH"
export CONTAINERD_NAMESPACE=berth-lab
# ctr warns that berth-containerd's version and revision are not its own; the rest
# it prints as it is.
ctr() {
    local out status=0
    out="$(command ctr --address "$socket" "$@" 2>&1)" || status=$?
    out="$(printf '%s\n' "$out" | grep -v 'mismatch' || true)"
    if [ -n "$out" ]; then printf '%s\n' "$out"; fi
    return $status
}

# shellcheck source=lib.sh
. "$repo/book/labs/lib.sh"

start_supervisor() {
    show "berth-containerd --root $root/root --state $root/state --address $socket &"
    "$LAB_BIN_DIR/berth-containerd" --root "$root/root" --state "$root/state" \
        --address "$socket" >>"$root/berth-containerd.log" 2>&1 &
    supervisor=$!
    disown $supervisor     # so that its death later is not reported as a job
    wait_until sh -c "command ctr --address '$socket' version >/dev/null 2>&1"
}

cleanup() {
    command ctr --address "$socket" task kill --signal SIGKILL counter >/dev/null 2>&1 || true
    sleep 0.3
    command ctr --address "$socket" task delete counter >/dev/null 2>&1 || true
    command ctr --address "$socket" containers delete counter >/dev/null 2>&1 || true
    kill "${supervisor:-}" 2>/dev/null || true
    sleep 0.3
    grep " $root/" /proc/mounts | cut -d' ' -f2 | xargs -r umount 2>/dev/null || true
    rm -rf "$root"
    # Tasks' cgroups are /NAMESPACE/ID in every hierarchy; the runtime removes the
    # task's, and the namespace's (now empty) is the lab's to remove.
    find /sys/fs/cgroup -maxdepth 3 -type d -name "$CONTAINERD_NAMESPACE" -exec rmdir {} + 2>/dev/null || true
}
trap cleanup EXIT

counter='trap "exit 0" TERM; i=0; while true; do echo tick $i; i=$((i+1)); usleep 100000; done'
log="$root/counter.log"
ticks() { wc -l <"$log" 2>/dev/null || echo 0; }
task_field() { ctr task ls | awk -v f="$1" '$1 == "counter" { print $f }'; }

say "Start berth-containerd and fill it with the real ctr"
start_supervisor
show "ctr version"
ctr version | sed -n '/Server/,$p'
show "ctr images import busybox.tar"
ctr images import "$image"
show "ctr images check"
ctr images check
show "ctr snapshots ls"
ctr snapshots ls

say "Run a container through berth-shim that ticks every 100 ms into a log file"
show "ctr run -d --runtime io.containerd.berth.v2 --log-uri file://$log docker.io/library/busybox:latest counter sh -c '$counter'"
ctr run -d --runtime io.containerd.berth.v2 --log-uri "file://$log" \
    docker.io/library/busybox:latest counter sh -c "$counter"
wait_until sh -c "[ \"\$(wc -l <'$log' 2>/dev/null || echo 0)\" -ge 5 ]"
show "ctr task ls"
ctr task ls
pid="$(task_field 2)"
parent="$(ps -o args= -p "$(ps -o ppid= -p "$pid" | tr -d ' ')" | cut -c1-60)"
echo "(the counter is pid $pid; its parent is: $parent)"

say "Kill berth-containerd with SIGKILL, as a crash would"
show "kill -9 $supervisor"
kill -9 "$supervisor"
wait_until sh -c "! kill -0 $supervisor 2>/dev/null"
before="$(ticks)"
sleep 1
show "ps -o pid,ppid,args -p $pid"
ps -o pid,ppid,args -p "$pid" | cut -c1-100 || echo "(nothing: the counter is gone)"
echo "(the log grew from $before to $(ticks) lines with no supervisor running)"

say "Start berth-containerd again and look"
start_supervisor
show "ctr task ls"
ctr task ls
show "ctr task exec --exec-id look counter ps"
ctr task exec --exec-id look counter ps
show "ctr task kill counter"
ctr task kill counter
wait_until sh -c "command ctr --address '$socket' task ls | grep -q 'counter.*STOPPED'"
show "ctr task ls"
ctr task ls
show "tail -n 3 $log"
tail -n 3 "$log"

status="$(task_field 3)"
after="$(task_field 2)"
if [ "$after" = "$pid" ] && [ "$status" = STOPPED ] && awk '$0 != "tick " NR-1 { bad = 1 } END { exit bad }' "$log"; then
    echo
    echo "RESULT: the task survived the supervisor: same pid $pid, all $(ticks) lines in its log, none missing"
    exit 0
fi
echo
echo "RESULT: the task did not come through the restart whole (status: $status)" >&2
exit 1
