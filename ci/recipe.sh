#!/usr/bin/env bash
# Prints the README's recipe NAME: the fenced block after its
# `<!-- recipe: NAME ... -->` line. CI runs or checks every recipe with it:
#   bash ci/recipe.sh cargo-config        (used by ci/ordinary-demo.sh)
#   bash ci/recipe.sh --check             (the others, checked here)
set -euo pipefail
cd "$(dirname "$0")/.."

recipe() {
    awk -v name="$1" '
        index($0, "<!-- recipe: " name " ") == 1 { found = 1; next }
        found && /^```/ { if (inside) exit; inside = 1; next }
        found && inside { print }
    ' README.md
}

# Lines that are not comments or blank, for comparing configurations.
significant() { grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' || true; }

if [ "${1:-}" != --check ]; then
    out=$(recipe "${1:?usage: ci/recipe.sh NAME | --check}")
    [ -n "$out" ] || { echo "README.md has no recipe $1" >&2; exit 1; }
    printf '%s\n' "$out"
    exit 0
fi

# The wrapper-script recipe is the configuration CI runs on ci/runner-demo.
if ! diff <(recipe nextest-wrapper | significant) \
    <(significant <ci/runner-demo/.config/nextest.toml); then
    echo "README's nextest-wrapper recipe differs from ci/runner-demo/.config/nextest.toml"
    exit 1
fi
# The cargo-config recipe is one runner for every Linux target.
recipe cargo-config | grep -qx "runner = \"hermetic run --\"" || {
    echo "README's cargo-config recipe does not set the runner"
    exit 1
}
# The CI matrix: valid YAML, N partitions, each job running its share of one
# archive with the runner.
recipe github-matrix | python3 -c '
import sys
try:
    import yaml
except ImportError:
    print("python3-yaml is not installed: the github-matrix recipe is not parsed")
    sys.exit(0)
jobs = yaml.safe_load(sys.stdin)["jobs"]
parts = jobs["test"]["strategy"]["matrix"]["partition"]
n = len(parts)
assert parts == list(range(1, n + 1)), parts
runs = " ".join(s.get("run", "") for s in jobs["test"]["steps"])
want = "--partition count:${{ matrix.partition }}/%d" % n
assert want in runs and "--archive-file tests.tar.zst" in runs, runs
builds = " ".join(s.get("run", "") for s in jobs["build"]["steps"])
assert "cargo nextest archive --archive-file tests.tar.zst" in builds, builds
print("github-matrix: %d partitions of one archive" % n)
'
echo "README recipes: nextest-wrapper, cargo-config and github-matrix checked"
