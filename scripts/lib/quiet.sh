# Sourced by the scripts: runs a noisy command (apt, cargo) with its output in a log file and
# one progress line on the terminal, so what the newcomer reads is the steps, not the noise.
# On failure the log's last lines are shown and the command's status returned.

# quietly LOG LABEL CMD...: LABEL on one line, updated with the log's length while CMD runs.
quietly() {
    local log=$1 label=$2
    shift 2
    mkdir -p "$(dirname "$log")"
    local t0=$SECONDS rc=0
    "$@" >>"$log" 2>&1 &
    local pid=$!
    if [[ -t 1 ]]; then
        while kill -0 "$pid" 2>/dev/null; do
            printf '\r     %s ... %ss, %s lines in %s ' "$label" $((SECONDS - t0)) \
                "$(wc -l <"$log")" "$log"
            sleep 1
        done
        printf '\r\033[K'
    fi
    wait "$pid" || rc=$?
    if ((rc)); then
        printf '     %s: FAILED (status %s) after %ss; the end of %s:\n' "$label" "$rc" \
            $((SECONDS - t0)) "$log"
        tail -n 40 "$log" | sed 's/^/     | /'
        return "$rc"
    fi
    printf '     %s: done in %ss (log: %s)\n' "$label" $((SECONDS - t0)) "$log"
}
