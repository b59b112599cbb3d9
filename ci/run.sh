#!/usr/bin/env bash
# CI for hermetic: lints, docs, then the README's test command as root and the
# same suite as an unprivileged user; then users' projects: the runner and
# wrapper-script demos, the ordinary demo from an archive in partitions, the
# README's recipes and real third-party suites. Run as root on a fresh clone
# (network access to crates.io):
#   bash .ci/run
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
export CARGO_TERM_COLOR=never

step() { printf '\n=== %s\n' "$*"; }

# Tests that cannot check what they are for on this host (no cgroups, one
# id...) pass but say so, appending a line here (tests/common: skip); each
# test step ends with their count and reasons. The file is root's, in a
# directory only root writes, and anyone may append to it (the rootless
# steps): no other user can put a link in its place.
skipdir=$(mktemp -d /var/tmp/hermetic-skipped.XXXXXX)
chmod 755 "$skipdir"
export HERMETIC_SKIPPED="$skipdir/skipped"
install -m 666 /dev/null "$HERMETIC_SKIPPED"
skipped() {
    if [ -s "$HERMETIC_SKIPPED" ]; then
        echo "$(wc -l < "$HERMETIC_SKIPPED") tests skipped what they check, on this host:"
        sed 's/^hermetic-test-skipped: /  /' "$HERMETIC_SKIPPED" | sort
    else
        echo "0 tests skipped what they check"
    fi
    install -m 666 /dev/null "$HERMETIC_SKIPPED"
}

step "host"
uname -r
echo "user namespaces allowed: $(cat /proc/sys/user/max_user_namespaces)"

# python3 and curl are real programs the tests run inside sandboxes; tc
# (iproute2) cross-checks the qdiscs a network sets.
missing=()
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
command -v tc >/dev/null || missing+=(iproute2)
# PostgreSQL: a real server that refuses root, run by tests/it/postgres.rs.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
# newuidmap/newgidmap: ids 0-65535 in a rootless user's sandboxes.
command -v newuidmap >/dev/null || missing+=(uidmap)
# bubblewrap: the baseline ci/real-suites.sh compares hermetic with.
command -v bwrap >/dev/null || missing+=(bubblewrap)
# PyYAML: ci/recipe.sh parses the README's CI matrix.
python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "cargo build --no-default-features (without rstest)"
cargo build --no-default-features

step "cargo doc (warnings are errors)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps

step "cargo run --example tour (as root)"
cargo run --example tour

step "cargo test (as root)"
# libtest has no timeout of its own: a hanging test fails this step with a
# message instead of running into CI's overall limit (the suite takes a few
# minutes here; nextest below kills hung tests itself, see .config).
status=0
timeout --kill-after=1m 30m cargo test || status=$?
if [ "$status" -ne 0 ]; then
    [ "$status" -eq 124 ] && echo "cargo test did not finish within 30 minutes: a test hangs"
    exit "$status"
fi
skipped

# --- hermetic as cargo's target runner -------------------------------------
# ci/runner-demo is an unchanged suite whose tests collide on one machine
# (they all bind 127.0.0.1:8080 and create the same /tmp file). Without a
# runner it fails (the control); with `hermetic run --` as the runner under
# nextest, every test gets a sandbox and it passes, leaving nothing in /tmp.
cargo build --bin hermetic
triple=$(rustc -vV | sed -n 's/^host: //p')
runner_var="CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_RUNNER"
demo_target="$repo/target/runner-demo"
marker=/tmp/runner-demo-marker
rm -f "$marker"

step "runner demo: without hermetic its tests collide (as root)"
if (cd ci/runner-demo && CARGO_TARGET_DIR="$demo_target" cargo nextest run --no-fail-fast); then
    echo "the demo suite passed with no sandboxes: it would prove nothing"
    exit 1
fi
rm -f "$marker"

no_marker() {
    if [ -e "$marker" ]; then
        echo "a sandboxed test left $marker in the host's /tmp"
        exit 1
    fi
}

step "runner demo: with $runner_var=\"hermetic run --\" it passes (as root)"
(cd ci/runner-demo && env CARGO_TARGET_DIR="$demo_target" RUNNER_DEMO_EXPECT=sandbox \
    "$runner_var=$repo/target/debug/hermetic run --" cargo nextest run)
no_marker

# A wrapper script scoped by a filterset (ci/runner-demo/.config/nextest.toml,
# profile "sandboxed"): the colliding tests run under `hermetic run --`, the
# test in tests/it/host.rs on the host, where it checks it is.
step "README recipes: the wrapper script is the demo's, the CI matrix is sound"
bash ci/recipe.sh --check

step "runner demo: a nextest wrapper script for the colliding tests only (as root)"
(cd ci/runner-demo && env CARGO_TARGET_DIR="$demo_target" RUNNER_DEMO_EXPECT=host \
    PATH="$repo/target/debug:$PATH" cargo nextest run --profile sandboxed)
no_marker

# The multi-machine path: one archive, then each share of the suite on its
# own machine (here: one after the other) with `--partition count:K/N`,
# extracted where nextest puts it by default (under /tmp).
(cd ci/runner-demo && CARGO_TARGET_DIR="$demo_target" \
    cargo nextest archive --archive-file "$demo_target/demo.tar.zst")
for k in 1 2; do
    step "runner demo: from the archive, partition count:$k/2, with the runner (as root)"
    (cd ci/runner-demo && env RUNNER_DEMO_EXPECT=sandbox \
        "$runner_var=$repo/target/debug/hermetic run --" \
        cargo nextest run --archive-file "$demo_target/demo.tar.zst" \
        --workspace-remap . --partition "count:$k/2")
    no_marker
done

# --- the same suite, rootless ------------------------------------------------
# Build as root, run the built tests as an ordinary user: the user needs
# neither root's cargo home nor write access to the checkout.
user=hermetic-ci
if ! id -u "$user" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
fi
uid=$(id -u "$user")
gid=$(id -g "$user")
# Subordinate ids, so that its sandboxes get ids 0-65535 (newuidmap); a
# system user gets none from useradd.
grep -q "^$user:" /etc/subuid || usermod --add-subuids 200000-265535 "$user"
grep -q "^$user:" /etc/subgid || usermod --add-subgids 200000-265535 "$user"

# Not under /tmp: every sandbox mounts its own tmpfs there, which would hide
# the workspace from closures that read fixtures.
work=$(mktemp -d /var/tmp/hermetic-ci.XXXXXX)
trap 'rm -rf "$work" "$skipdir"' EXIT
chmod 755 "$work"

step "cargo nextest archive (as root)"
cargo nextest archive --archive-file "$work/tests.tar.zst"
mkdir -p "$work/src" "$work/bin" "$work/extract"
git ls-files -z | xargs -0 cp --parents -t "$work/src"
cp "$(command -v cargo-nextest)" "$repo/target/debug/hermetic" "$demo_target/demo.tar.zst" "$work/bin/"
chown -R "$uid:$gid" "$work"

cd "$work"
rootless() {
    setpriv --reuid="$uid" --regid="$gid" --clear-groups \
        env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="$work" CI="${CI:-}" \
            HERMETIC_SKIPPED="$HERMETIC_SKIPPED" "$@" \
        "$work/bin/cargo-nextest" nextest run \
            --archive-file "$work/tests.tar.zst" \
            --workspace-remap "$work/src" \
            --extract-to "$work/extract" \
            --extract-overwrite \
            --no-fail-fast
}

step "cargo nextest run (as $user, uid $uid: ids 0-65535 through newuidmap)"
rootless
skipped

step "cargo nextest run (as $user, uid $uid: one id, HERMETIC_ONE_ID=1)"
rootless HERMETIC_ONE_ID=1
skipped

# demo_rootless VAR=VALUE... -- NEXTEST-RUN-ARGS...: the demo's archive, as
# $user, extracted where nextest puts it by default (under /tmp); `hermetic`
# on PATH for the wrapper script.
demo_rootless() {
    local vars=()
    while [ "$1" != -- ]; do
        vars+=("$1")
        shift
    done
    shift
    setpriv --reuid="$uid" --regid="$gid" --clear-groups \
        env -i PATH="$work/bin:/usr/local/bin:/usr/bin:/bin" HOME="$work" CI="${CI:-}" \
        "${vars[@]}" "$work/bin/cargo-nextest" nextest run \
            --archive-file "$work/bin/demo.tar.zst" \
            --workspace-remap "$work/src/ci/runner-demo" "$@"
}
for k in 1 2; do
    step "runner demo: from the archive, partition count:$k/2, with the runner (as $user)"
    demo_rootless RUNNER_DEMO_EXPECT=sandbox "$runner_var=$work/bin/hermetic run --" \
        -- --partition "count:$k/2"
    no_marker
done

step "runner demo: from the archive, the wrapper script for the colliding tests only (as $user)"
demo_rootless RUNNER_DEMO_EXPECT=host -- --profile sandboxed
no_marker

# --- users' projects ---------------------------------------------------------
# An ordinary suite (writes in its tree, CARGO_TARGET_TMPDIR, $HOME and /tmp,
# a fixed port, a fixture, its own binary), checked out and built under /tmp,
# from an archive in two partitions, as root, hermetic-ci and hermetic-noids.
cd "$repo"
bash ci/ordinary-demo.sh "$repo/target/debug/hermetic"

# Real third-party suites, unchanged, from crates.io: every test that passes
# plain passes under `hermetic run --`, and their trees stay unchanged.
step "real suites: fs_extra, minreq, tempfile, walkdir, filetime, glob (plain, hermetic, bwrap)"
bash ci/real-suites.sh

step "done: all checks passed as root and as $user"
