#!/bin/bash
# The instructor's lab: kill a chapter's daemon under a running container, start it
# again, and see whether the container lived through it.
#
#   book/labs/restart-lab.sh 02    # the libcontainer era: the container dies
#   book/labs/restart-lab.sh 03    # the split engine: it survives, and loses no line
#   book/labs/restart-lab.sh 01    # the LXC era (needs lxc): it dies
#
# Run it as root from the repository, after `cargo xtask setup`. It builds the chapter,
# starts its daemon on a fresh root under /tmp, runs a container that prints a line
# every 100 ms, SIGKILLs the daemon (and in chapter 03 the supervisor too), starts the
# daemon again and looks. Every command it runs is printed with a `$` before it, so the
# class can follow along; the last line says what happened. It exits 0 when the chapter
# behaved as its era did (01 and 02: the container died; 03: it survived, same process,
# no line lost), so the tests run it too. Set LAB_BIN to use a binary already built.
set -euo pipefail

chapter="${1:-}"
case "$chapter" in
    01) package=lxc-era ;;
    02) package=libcontainer-era ;;
    03) package=split-era ;;
    *) echo "usage: $0 01|02|03" >&2; exit 2 ;;
esac
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
if [ -z "${LAB_BIN:-}" ]; then
    cargo build --quiet --manifest-path "$repo/Cargo.toml" -p "$package"
    LAB_BIN="$repo/target/debug/$package"
fi
root="$(mktemp -d /tmp/restart-lab-$chapter.XXXXXX)"
export BERTH_CHAPTER_SOCKET="$root/api.sock"
bin="$package"      # how commands are shown; `engine` runs them
engine() { "$LAB_BIN" "$@"; }

# shellcheck source=lib.sh
. "$repo/book/labs/lib.sh"

start_daemon() {
    show "$bin daemon --root $root &"
    "$LAB_BIN" daemon --root "$root" >>"$root/daemon.log" 2>&1 &
    disown $!     # so that its death later is not reported as a job
    wait_until engine images >/dev/null 2>&1
}

cleanup() {
    engine stop counter >/dev/null 2>&1 || true
    engine rm counter >/dev/null 2>&1 || true
    for pid_file in "$root/daemon.pid" "$root/supervisor.pid"; do
        [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null || true
    done
    sleep 0.2
    rm -rf "$root"
}
trap cleanup EXIT

# The token is the counter's `$1`: a way to find its process on the host.
token="lab-counter-$$"
counter='trap "exit 0" TERM; i=0; while true; do echo tick $i; i=$((i+1)); usleep 100000; done'
# The oldest process whose command line *starts* with the counter's shell: not
# lxc-execute or LXC's init (chapter 01), whose arguments carry the same command, and not
# a child the shell has just forked for `usleep`, which is newer.
container_pid() { pgrep -o -f -- "^(/bin/)?sh -c .*$token" || true; }
container_started() { [ -n "$(container_pid)" ]; }
log_lines() { engine logs counter 2>/dev/null | wc -l; }

say "Chapter $chapter: start the daemon and run a container that ticks every 100 ms"
start_daemon
show "$bin load busybox.tar"
engine load "$image"
show "$bin run -d --name counter busybox sh -c '$counter' counter $token"
engine run -d --name counter busybox sh -c "$counter" counter "$token" >/dev/null
wait_until container_started
sleep 1
show "$bin ps"
engine ps
pid="$(container_pid)"
parent="$(ps -o args= -p "$(ps -o ppid= -p "$pid" | tr -d ' ')" | cut -c1-60)"
echo "(the counter is pid $pid; its parent is: $parent)"

say "Kill the daemon with SIGKILL, as a crash would"
victims="$(cat "$root/daemon.pid")"
show "kill -9 \$(cat $root/daemon.pid)"
if [ -f "$root/supervisor.pid" ]; then
    show "kill -9 \$(cat $root/supervisor.pid)"
    victims="$victims $(cat "$root/supervisor.pid")"
fi
# shellcheck disable=SC2086 # one pid or two
kill -9 $victims
for victim in $victims; do
    wait_until sh -c "! kill -0 $victim 2>/dev/null || grep -qs '^State:.*Z' /proc/$victim/status"
done
sleep 1
show "ps -o pid,ppid,args -p $pid"
ps -o pid,ppid,args -p "$pid" | cut -c1-100 || echo "(nothing: the counter is gone)"

say "Start the daemon again and look"
start_daemon
show "$bin ps -a"
engine ps -a
after="$(container_pid || true)"

if [ "$after" = "$pid" ]; then
    show "$bin logs counter | tail -n 3"
    engine logs counter | tail -n 3
    lines="$(log_lines)"
    if engine logs counter | awk '$0 != "tick " NR-1 { bad = 1 } END { exit bad }'; then
        verdict="survived"
        echo
        echo "RESULT: the container survived the daemon: same pid $pid, all $lines lines in its log, none missing"
    else
        verdict="lost-lines"
        echo
        echo "RESULT: the container survived, but lines are missing from its log"
    fi
else
    verdict="died"
    echo
    echo "RESULT: the container died with the daemon"
fi

case "$chapter:$verdict" in
    01:died | 02:died | 03:survived) exit 0 ;;
    *) echo "(unexpected for chapter $chapter)" >&2; exit 1 ;;
esac
