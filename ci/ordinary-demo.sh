#!/usr/bin/env bash
# ci/ordinary-demo, the way a project would run it on a CI matrix: checked
# out under /tmp, built with its target dir under /tmp, archived once with
# `cargo nextest archive`, then run from the archive in two partitions
# (`--partition count:K/2`, extracted where nextest puts it by default, under
# /tmp) with `hermetic run --` as cargo's target runner, set by the README's
# `.cargo/config.toml` recipe: each test in a `hermetic run` of its own. As root, then as hermetic-ci (ids 0-65535 through
# newuidmap) and hermetic-noids (no subordinate ids: one id), each with a
# checkout and a $HOME of its own. Without hermetic the suite fails (the
# control). Afterwards, no file any test wrote is anywhere (every one is
# named *ordinary-demo-wrote*), and every checkout is byte for byte what it
# was.
#
#   bash ci/ordinary-demo.sh /path/to/hermetic     (as root; ci/run.sh does)
set -euo pipefail

cd "$(dirname "$0")/.."
repo=$(pwd)
hermetic=${1:?usage: ci/ordinary-demo.sh /path/to/hermetic}
export CARGO_TERM_COLOR=never
# $HOME changes below; cargo and rustup keep theirs.
export CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
export RUSTUP_HOME=${RUSTUP_HOME:-$HOME/.rustup}
tests=$(grep -c '#\[test\]' ci/ordinary-demo/tests/ordinary.rs)

step() { printf '\n=== %s\n' "$*"; }

# A tree's contents: every path with its type and mode, every file's hash.
tree_hash() {
    (cd "$1" && {
        find . -printf '%y %m %p\n' | LC_ALL=C sort
        find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
    } | sha256sum | cut -d' ' -f1)
}

# A checkout of the demo at $1, with the README's runner recipe.
checkout() {
    cp -r ci/ordinary-demo/. "$1"
    mkdir "$1/.cargo"
    bash ci/recipe.sh cargo-config >"$1/.cargo/config.toml"
}

# Every path a test of the demo wrote is named *ordinary-demo-wrote*.
leftovers() {
    find "$@" /tmp /var/tmp /root -name '*ordinary-demo-wrote*' 2>/dev/null || true
}

# The users: hermetic-ci with subordinate ids, hermetic-noids without.
for user in hermetic-ci hermetic-noids; do
    id -u "$user" >/dev/null 2>&1 ||
        useradd --system --no-create-home --shell /usr/sbin/nologin "$user"
done
grep -q '^hermetic-ci:' /etc/subuid || usermod --add-subuids 200000-265535 hermetic-ci
grep -q '^hermetic-ci:' /etc/subgid || usermod --add-subgids 200000-265535 hermetic-ci
if grep -q '^hermetic-noids:' /etc/subuid; then
    echo "hermetic-noids has subordinate ids in /etc/subuid: it would not test the one-id mode"
    exit 1
fi

# The build, as on a build machine: a checkout and its target dir under /tmp.
build=$(mktemp -d /tmp/ordinary-demo-build.XXXXXX)
bin=$(mktemp -d /tmp/ordinary-demo-bin.XXXXXX)
cleanup=("$build" "$bin")
trap 'rm -rf "${cleanup[@]}"' EXIT
chmod 755 "$build" "$bin"
cp "$hermetic" "$(command -v cargo-nextest)" "$bin/"
hermetic=$bin/hermetic
cp -r ci/ordinary-demo "$build/src"
export CARGO_TARGET_DIR=$build/target

step "ordinary demo: without hermetic (no runner) its tests collide (the control)"
mkdir "$build/home"
if (cd "$build/src" && HOME=$build/home cargo nextest run --no-fail-fast); then
    echo "the ordinary demo passed with no sandboxes: it would prove nothing"
    exit 1
fi
# What the control wrote, it leaves: clear it, and start from a fresh
# checkout.
rm -rf "$build/src" "$build/home" /tmp/ordinary-demo-wrote.*
find "$build/target" -name '*ordinary-demo-wrote*' -prune -exec rm -rf {} +
[ -z "$(leftovers "$build")" ] || { leftovers "$build"; exit 1; }
mkdir "$build/src"
checkout "$build/src"

step "ordinary demo: cargo nextest archive"
(cd "$build/src" && cargo nextest archive --archive-file "$bin/demo.tar.zst")
chmod 644 "$bin/demo.tar.zst"

# Runs both partitions of the archive as $1 (root or a user) from checkout
# $2 with $HOME $3, each test under `hermetic run --` (the checkout's
# .cargo/config.toml; `hermetic` on PATH); checks that every test ran once
# and passed.
partitions() {
    local user=$1 checkout=$2 home=$3 passed=0 k log
    for k in 1 2; do
        step "ordinary demo: partition count:$k/2 as $user, checkout $checkout"
        log=$(mktemp /var/tmp/ordinary-demo-log.XXXXXX)
        cleanup+=("$log")
        local as=()
        if [ "$user" != root ]; then
            chown "$user" "$log"
            as=(setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --clear-groups)
        fi
        (cd "$checkout" && "${as[@]}" env -i PATH="$bin:/usr/local/bin:/usr/bin:/bin" \
            HOME="$home" CI="${CI:-}" \
            "$bin/cargo-nextest" nextest run \
            --archive-file "$bin/demo.tar.zst" \
            --workspace-remap "$checkout" \
            --partition "count:$k/2" --no-fail-fast 2>&1 | tee "$log")
        passed=$((passed + $(sed -nE 's/.* ([0-9]+) tests? run: ([0-9]+) passed.*/\2/p' "$log" | tail -1)))
    done
    if [ "$passed" -ne "$tests" ]; then
        echo "the two partitions passed $passed tests as $user, not the $tests of the suite"
        exit 1
    fi
}

# Checks that nothing the tests wrote is left and the checkout is as it was
# (tree hash $3).
untouched() {
    local checkout=$1 home=$2 before=$3
    if [ -n "$(leftovers "$checkout" "$home" "$build")" ]; then
        echo "files the sandboxed tests wrote reached the host:"
        leftovers "$checkout" "$home" "$build"
        exit 1
    fi
    if [ -n "$(find "$home" -mindepth 1 | head -1)" ]; then
        echo "the sandboxed tests wrote into \$HOME $home:"
        find "$home" | head
        exit 1
    fi
    if [ "$(tree_hash "$checkout")" != "$before" ]; then
        echo "the checkout $checkout changed"
        exit 1
    fi
    echo "nothing the tests wrote is left; $checkout is unchanged"
}

# Root: the build's own checkout, its target dir (CARGO_TARGET_TMPDIR is in
# it) still there.
home=$(mktemp -d /tmp/ordinary-demo-home.XXXXXX)
cleanup+=("$home")
before=$(tree_hash "$build/src")
partitions root "$build/src" "$home"
untouched "$build/src" "$home" "$before"

# The users, as target machines: the build machine's checkout and target
# dir are gone (the archive holds what the tests need; CARGO_TARGET_TMPDIR
# names a path that no longer exists, under /tmp, where anyone may create
# it); each has a checkout and a $HOME of its own.
rm -rf "$build"
for user in hermetic-ci hermetic-noids; do
    dir=$(mktemp -d /tmp/ordinary-demo-checkout.XXXXXX)
    home=$(mktemp -d /var/tmp/ordinary-demo-home.XXXXXX)
    cleanup+=("$dir" "$home")
    checkout "$dir"
    chmod 755 "$dir"
    chown -R "$user:" "$dir" "$home"
    before=$(tree_hash "$dir")
    partitions "$user" "$dir" "$home"
    untouched "$dir" "$home" "$before"
done
step "ordinary demo: passed from an archive in two partitions, as root, hermetic-ci and hermetic-noids; nothing left behind"
