#!/usr/bin/env bash
# Install the Debian/Ubuntu packages a make target needs, skipping what is already there.
#
# Usage: bash scripts/system-packages.sh SET [SET...]   (sets: test, bench, container)
# The packages and the commands that show them installed: requirements/debian-packages.txt.
#
# As root it runs apt-get; otherwise through sudo when sudo needs no password (GitHub's runners).
# Where it cannot install (no root and no passwordless sudo, or no apt-get), it stops with one
# message naming what is missing and the command that installs it, and exits 1: `make test`
# then stops before any test runs instead of failing them halfway through.
set -euo pipefail
cd "$(dirname "$0")/.."
list=${SYSTEM_PACKAGES_LIST:-requirements/debian-packages.txt}

[[ $# -gt 0 ]] || { echo "usage: $0 SET [SET...]  (test, bench, container)" >&2; exit 2; }

missing=()
while read -r set commands package _; do
    [[ -z $set || $set == \#* ]] && continue
    wanted=false
    for asked in "$@"; do [[ $asked == "$set" ]] && wanted=true; done
    $wanted || continue
    found=false
    IFS='|' read -ra alternatives <<<"$commands"
    for command in "${alternatives[@]}"; do
        # /usr/sbin: haproxy lives there, off a normal user's PATH.
        if command -v "$command" >/dev/null 2>&1 || [[ -x /usr/sbin/$command ]]; then
            found=true
            break
        fi
    done
    if ! $found && [[ " ${missing[*]-} " != *" $package "* ]]; then missing+=("$package"); fi
done <"$list"

[[ ${#missing[@]} -eq 0 ]] && exit 0

sudo=""
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else sudo=none; fi
fi
if [[ $sudo == none ]] || ! command -v apt-get >/dev/null 2>&1; then
    why="this is not root and sudo asks for a password"
    command -v apt-get >/dev/null 2>&1 || why="apt-get is not here (not Debian or Ubuntu)"
    {
        echo "system-packages: missing ${missing[*]} ($why)."
        echo "Install them, then run the command again:"
        echo "    sudo apt-get install -y ${missing[*]}"
        echo "(what needs each one: $list)"
    } >&2
    exit 1
fi

echo "system-packages: installing ${missing[*]}" >&2
as_root=(env DEBIAN_FRONTEND=noninteractive)
[[ -n $sudo ]] && as_root=("$sudo" "${as_root[@]}")
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
