#!/usr/bin/env bash
# Real third-party suites, unchanged, under `hermetic run --` as cargo's
# target runner with nextest (a sandbox per test), side by side with the
# same suites plain and under bubblewrap as the runner:
#
#   fs_extra 1.3.0  writes next to its sources (tests/temp) in every test
#   minreq 2.14.1   every test process starts its test server on the fixed
#                   port 35562: under nextest (a process per test) it needs
#                   -j 1 today
#   tempfile 3.27.0 writes in /tmp and in its working directory
#   walkdir 2.5.1   makes its trees in /tmp/rust-walkdir/N, N counted from 0
#                   in every test process: plain in parallel, two test
#                   processes collide (File exists); each sandbox has its /tmp
#   filetime 0.2.30 sets and reads file times in temporary directories
#   glob 0.3.4      globs trees it makes in its working directory, and /root
#
# For each: the crate's published source is fetched with cargo and copied out
# of the registry; its tests are built once (a nextest archive) and run from
# that archive four ways: plain with -j 1 (the reference: what passes today),
# plain in parallel, then in parallel under hermetic, and under bwrap
# (`bwrap --unshare-all --die-with-parent --bind / / --proc /proc --dev /dev
# --tmpfs /tmp`, the issue's baseline) as the runner; for a suite with tests
# in ci/real-suites.known, the last three again without those (the -common
# modes: the cost over the tests that pass in every mode). Each run starts from a
# pristine copy of the tree. It fails if a test that passes in the reference
# does not pass under hermetic, or if the source tree is not byte for byte
# what it was after the hermetic run. It prints, per run, the tests passed,
# the mean wall time per test (nextest's own per-test times) and the CPU per
# test (user + system of the whole run, nextest's listing included, divided
# by the tests run).
#
# Run as root or as any user who may make sandboxes, from the repository:
#   bash ci/real-suites.sh [WORKDIR]     (default /var/tmp/hermetic-real-suites)
# ROUNDS=N runs every mode N times, in turn, and reports the medians (the
# pass sets are checked in every round).
# WORKDIR must not lie under /tmp: bwrap's --tmpfs /tmp would hide it.
# Needs network access to crates.io (cargo fetch) on the first run, cargo,
# cargo-nextest, bwrap and python3. HERMETIC=path/to/hermetic to use another
# build (default: target/release/hermetic of this checkout, built).
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
work=${1:-/var/tmp/hermetic-real-suites}
case "$work" in /tmp | /tmp/*)
    echo "WORKDIR $work lies under /tmp, which bwrap's --tmpfs /tmp hides"
    exit 2
    ;;
esac
export CARGO_TERM_COLOR=never
crates=("fs_extra 1.3.0" "minreq 2.14.1" "tempfile 3.27.0" "walkdir 2.5.1" "filetime 0.2.30" "glob 0.3.4")
# CRATES="walkdir 2.5.1,glob 0.3.4" runs only those.
if [ -n "${CRATES:-}" ]; then
    IFS=, read -r -a crates <<<"$CRATES"
fi
if [ -z "${HERMETIC:-}" ]; then
    # Optimised, as `cargo install` would build it.
    cargo build -q --release --bin hermetic
    HERMETIC=$repo/target/release/hermetic
fi
bwrap_runner="bwrap --unshare-all --die-with-parent --bind / / --proc /proc --dev /dev --tmpfs /tmp"
triple=$(rustc -vV | sed -n 's/^host: //p')
runner_var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUNNER"
mkdir -p "$work/src" "$work/extract"
results=$work/results.txt
rows=$work/rounds.txt
: >"$rows"
rounds=${ROUNDS:-1}

step() { printf '\n=== %s\n' "$*"; }

# The published sources: a scratch crate depending on exactly these
# versions, fetched, then copied out of cargo's registry.
step "fetching ${crates[*]}"
scratch=$work/fetch
mkdir -p "$scratch/src"
: >"$scratch/src/lib.rs"
{
    printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n\n[workspace]\n\n[dependencies]\n'
    for c in "${crates[@]}"; do
        set -- $c
        printf '%s = "=%s"\n' "$1" "$2"
    done
} >"$scratch/Cargo.toml"
(cd "$scratch" && cargo fetch -q)
registry=${CARGO_HOME:-$HOME/.cargo}/registry/src

# A tree's contents: every path with its type and mode, every file's hash.
tree_hash() {
    (cd "$1" && {
        find . -printf '%y %m %p\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -d' ' -f1)
}

# Runs "$@" (output into the file $1) and prints its wall time and the CPU
# (user + system) of every process it made, in seconds: counted by a cgroup
# of its own where one can be made (cgroup v2: every process, also those
# reaped by no one of ours), else by getrusage of the processes it reaped.
measure() {
    python3 -c '
import os, resource, subprocess, sys, time
cgroup = None
for line in open("/proc/mounts"):
    dev, path, kind = line.split()[:3]
    if kind == "cgroup2":
        mine = open("/proc/self/cgroup").read().split("0::", 1)[-1].split()[0]
        try:
            cgroup = path + mine.rstrip("/") + "/real-suites-" + str(os.getpid())
            os.mkdir(cgroup)
        except OSError:
            cgroup = None
        break
def enter():
    if cgroup:
        with open(f"{cgroup}/cgroup.procs", "w") as f:
            f.write("0")
t = time.monotonic()
subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], "w"), stderr=subprocess.STDOUT,
               preexec_fn=enter)
wall = time.monotonic() - t
if cgroup:
    stat = dict(l.split() for l in open(f"{cgroup}/cpu.stat"))
    cpu, how = int(stat["usage_usec"]) / 1e6, "cgroup"
    # A process of the run may still be exiting: give it a few seconds.
    for _ in range(100):
        if "populated 0" in open(f"{cgroup}/cgroup.events").read():
            os.rmdir(cgroup)
            break
        time.sleep(0.05)
    else:
        left = open(f"{cgroup}/cgroup.procs").read().split()
        print(f"processes outlived the run: {left} (in {cgroup})", file=sys.stderr)
else:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu, how = r.ru_utime + r.ru_stime, "rusage"
print(f"{wall:.3f} {cpu:.3f} {how}")
' "$@"
}

# Tests that passed, one "binary-id test-name" a line, from nextest's
# output (PASS, or LEAK: passed with a handle left open).
passed() {
    sed -nE 's/^ +(PASS|LEAK) +\[ *[0-9.]+s\] +(\( *[0-9]+\/ *[0-9]+\) +)?//p' "$1" | LC_ALL=C sort
}
# Every test's own time, summed (s), and how many tests ran.
per_test() {
    sed -nE 's/^ +[A-Z-]+ +\[ *([0-9.]+)s\] .*/\1/p' "$1" |
        awk '{s += $1; n++} END {printf "%.3f %d\n", s, n}'
}

failures=0
for c in "${crates[@]}"; do
    set -- $c
    name=$1 version=$2
    pristine=$work/pristine/$name-$version
    src=$work/src/$name-$version
    target=$work/target/$name-$version
    step "$name $version: build"
    if [ ! -d "$pristine" ]; then
        mkdir -p "$work/pristine"
        cp -r "$registry"/*/"$name-$version" "$pristine"
        # The lock file cargo would write at the first build, written now so
        # that the tree the suites run in is complete.
        [ -e "$pristine/Cargo.lock" ] || (cd "$pristine" && cargo generate-lockfile -q)
    fi
    rm -rf "$src" && cp -a "$pristine" "$src"
    (cd "$src" && CARGO_TARGET_DIR=$target cargo nextest archive \
        --archive-file "$work/$name.tar.zst" 2>&1 | tail -1)
    before=$(tree_hash "$pristine")
    mkdir -p "$work/extract/$name"

    # The tests of this suite known to fail under hermetic (with why, in
    # ci/real-suites.known), as a nextest filter that leaves them out: the
    # "-common" modes measure the cost per test over the tests that pass
    # in every mode, where a failing test's backtrace (~90 ms each) does
    # not count as what a sandbox costs.
    common_filter=$({ grep -v '^#' "$repo/ci/real-suites.known" || true; } | awk -v crate="$name" '
        index($1, crate "::") == 1 { b = substr($1, length(crate) + 3); f = f (f ? " | " : "") "(binary(=" b ") & test(=" $2 "))" }
        END { if (f) print "not (" f ")" }')
    modes=(reference plain hermetic bwrap)
    [ -n "$common_filter" ] && modes+=(plain-common hermetic-common bwrap-common)
    for round in $(seq "$rounds"); do
        for mode in "${modes[@]}"; do
            rm -rf "$src" && cp -a "$pristine" "$src"
            log=$work/$name.$mode.log
            threads=()
            runner=()
            filter=()
            case $mode in
            *-common) filter=(-E "$common_filter") ;;
            esac
            case $mode in
            reference) threads=(-j 1) ;;
            hermetic*) runner=("$runner_var=$HERMETIC run --") ;;
            bwrap*) runner=("$runner_var=$bwrap_runner") ;;
            esac
            read -r wall cpu how < <(cd "$src" && measure "$log" env "${runner[@]}" \
                cargo nextest run --no-fail-fast --final-status-level none "${threads[@]}" "${filter[@]}" \
                --archive-file "$work/$name.tar.zst" \
                --workspace-remap "$src" \
                --extract-to "$work/extract/$name" --extract-overwrite)
            passed "$log" >"$work/$name.$mode.passed"
            read -r sum ran < <(per_test "$log")
            if [ "$ran" -eq 0 ]; then
                echo "FAIL: no test ran ($mode); $log says:"
                tail -20 "$log"
                failures=$((failures + 1))
            fi
            after=$(tree_hash "$src")
            unchanged=$([ "$after" = "$before" ] && echo unchanged || echo changed)
            # suite mode round passed ran wall/test CPU/test (ms) counter run(s) tree
            printf '%-16s %-9s %2d %4d %4d %7.1f %7.1f %-6s %6.1f %s\n' \
                "$name-$version" "$mode" "$round" "$(wc -l <"$work/$name.$mode.passed")" "$ran" \
                "$(echo "$sum $ran" | awk '{print $2 ? 1000 * $1 / $2 : 0}')" \
                "$(echo "$cpu $ran" | awk '{print $2 ? 1000 * $1 / $2 : 0}')" "$how" \
                "$wall" "$unchanged" | tee -a "$rows"
            if [[ $mode == hermetic* ]] && [ "$unchanged" != unchanged ]; then
                echo "FAIL: the hermetic run changed $src"
                diff <(cd "$pristine" && find . | sort) <(cd "$src" && find . | sort) | head -20 || true
                failures=$((failures + 1))
            fi
        done
        missing=$(LC_ALL=C comm -23 "$work/$name.reference.passed" "$work/$name.hermetic.passed")
        # Known differences, each with its reason, in ci/real-suites.known.
        known=$(printf '%s\n' "$missing" | grep -Fx -f <(grep -v '^#' "$repo/ci/real-suites.known") || true)
        if [ -n "$known" ]; then
            echo "known: $(printf '%s\n' "$known" | grep -c .) test(s) of $name fail under hermetic for a reason in ci/real-suites.known:"
            printf '%s\n' "$known" | sed 's/^/  /'
        fi
        missing=$(printf '%s\n' "$missing" | grep -vFx -f <(grep -v '^#' "$repo/ci/real-suites.known") || true)
        if [ -n "$missing" ]; then
            echo "FAIL: passed in the reference run, not under hermetic:"
            echo "$missing" | head -20
            grep -m 5 -A 15 'FAIL \[' "$work/$name.hermetic.log" | head -60 || true
            failures=$((failures + 1))
        fi
    done
done

step "results ($results; every round in $rows)"
# Per suite and mode, the medians over the rounds; then what hermetic and
# bwrap add per test over the plain parallel run, and the one to the other.
awk -v rounds="$rounds" '
function median(list,   n, a, i, j, t) {
    n = split(list, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
{
    k = $1 " " $2
    if (!(k in seen)) { seen[k] = 1; order[++n] = k }
    wall[k] = wall[k] " " $6; cpu[k] = cpu[k] " " $7
    passed[k] = passed[k] == "" || $4 < passed[k] ? $4 : passed[k]; ran[k] = $5; tree[k] = $10; how = $8
}
END {
    printf "%-16s %-9s %9s %14s %14s  %s\n", "suite", "mode", "passed", "wall/test", "CPU/test", "tree"
    for (i = 1; i <= n; i++) {
        k = order[i]; split(k, p, " ")
        printf "%-16s %-9s %4d of %3d %11.1f ms %11.1f ms  %s\n", p[1], p[2], passed[k], ran[k], median(wall[k]), median(cpu[k]), tree[k]
    }
    print ""
    printf "%-16s %28s %28s %10s %12s\n", "added per test", "hermetic (wall, CPU)", "bwrap (wall, CPU)", "CPU ratio", "CPU/test h/b"
    for (i = 1; i <= n; i++) {
        k = order[i]; split(k, p, " ")
        if (p[2] != "plain" && p[2] != "plain-common") continue
        suffix = p[2] == "plain" ? "" : "-common"
        h = p[1] " hermetic" suffix; b = p[1] " bwrap" suffix
        if (suffix) p[1] = p[1] "*"
        hw = median(wall[h]) - median(wall[k]); hc = median(cpu[h]) - median(cpu[k])
        bw = median(wall[b]) - median(wall[k]); bc = median(cpu[b]) - median(cpu[k])
        ratio = bc > 0 ? sprintf("%9.2fx", hc / bc) : "      n/a"
        printf "%-16s %+11.1f ms %+11.1f ms %+11.1f ms %+11.1f ms %10s %11.2fx\n", p[1], hw, hc, bw, bc, ratio, median(cpu[h]) / median(cpu[b])
    }
    printf "\n(medians of %d round(s); CPU counted by %s; reference: plain, -j 1; plain, hermetic, bwrap: in parallel;\n", rounds, how
    printf " CPU ratio: what hermetic adds over plain to what bwrap adds, n/a where bwrap adds nothing measurable;\n"
    printf " CPU/test h/b: hermetic'"'"'s CPU per test to bwrap'"'"'s, the steadier of the two;\n"
    printf " SUITE*, the -common modes: the same over the tests that pass in every mode, the known ones left out)\n"
}' "$rows" | tee "$results"
if [ "$failures" -ne 0 ]; then
    echo "$failures check(s) failed"
    exit 1
fi
echo "every test that passes in the reference passes under hermetic, but those in ci/real-suites.known; the trees are unchanged"
