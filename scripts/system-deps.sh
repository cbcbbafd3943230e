#!/usr/bin/env bash
# System programs the grading tool uses beyond Python: bubblewrap (`bwrap`, sandboxed kernels)
# and the PostgreSQL server (tests of PostgreSQL gradebooks and sharded grading).
#   scripts/system-deps.sh check    say what is missing and how to get it (never fails)
#   scripts/system-deps.sh install  install what is missing with apt (Debian/Ubuntu; as root or
#                                   with password-less sudo); nothing to do when both are there
set -euo pipefail

have_bwrap() { command -v bwrap >/dev/null 2>&1; }
have_postgres() {
    command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1 && return 0
    compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null
}

missing=()
have_bwrap || missing+=(bubblewrap)
have_postgres || missing+=(postgresql)

case "${1:-check}" in
check)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "note: ${missing[*]} not installed: the tests that need them are skipped and grading" \
             "runs without a sandbox. Install with \`make system-deps\` (apt, root) or" \
             "\`apt-get install ${missing[*]}\`."
    fi
    ;;
install)
    if [ ${#missing[@]} -eq 0 ]; then
        echo "system deps: bubblewrap and PostgreSQL already installed"
        exit 0
    fi
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "error: cannot install ${missing[*]}: need root (or password-less sudo)" >&2
            exit 1
        fi
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: cannot install ${missing[*]}: no apt-get here; use your package manager" >&2
        exit 1
    fi
    echo "system deps: installing ${missing[*]} with apt-get"
    log=$(mktemp)
    export DEBIAN_FRONTEND=noninteractive
    if ! { "${sudo[@]}" apt-get update -qq \
           && "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
           >"$log" 2>&1; then
        tail -n 20 "$log" >&2
        echo "error: apt-get could not install ${missing[*]} (output above)" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    have_bwrap && have_postgres || { echo "error: installed, but still missing" >&2; exit 1; }
    echo "system deps: installed ${missing[*]}"
    ;;
*)
    echo "usage: $0 check|install" >&2
    exit 2
    ;;
esac
