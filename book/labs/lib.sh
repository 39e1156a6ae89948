# What the book's labs share: how they print what they do, and how they wait.
# Sourced by restart-lab.sh and supervisor-lab.sh.

# A section heading, and a command as the class would type it.
say() { printf '\n# %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; }

# Waits up to 10 seconds for a condition; a lab must never hang in front of a class.
wait_until() {
    local tries=0
    until "$@"; do
        tries=$((tries + 1))
        if [ $tries -ge 200 ]; then
            echo "gave up waiting for: $*" >&2
            return 1
        fi
        sleep 0.05
    done
}
