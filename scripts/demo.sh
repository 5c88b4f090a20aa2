#!/usr/bin/env bash
# The main job, from a fresh machine: set everything up, build the example package
# universe (real RPMs made with rpmbuild + createrepo_c), build the recipe RECIPE
# (default: recipes/cat, Oracle smith's README example) into an OCI image, run it with runc
# on a read-only root, and show what it printed and how big the image is.
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:-recipes/cat}
scripts/setup.sh

mkdir -p out
universe=$(.venv/bin/python -c '
from pathlib import Path
from tests.rpm_universe import cached_universe
print(cached_universe(Path("out/universes").resolve()).root)')
ln -sfn "$universe" out/universe   # where the example recipes' baseurl points

name=$(basename "$recipe")
.venv/bin/smith build "$recipe" -o "out/$name.oci" --tag "$name" --cache-dir out/cache

bundle="out/$name.bundle"
rm -rf "$bundle"
umoci unpack --image "out/$name.oci:$name" "$bundle" >/dev/null
.venv/bin/python - "$bundle/config.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["root"]["readonly"] = True   # a microcontainer runs on a read-only root
config["process"]["terminal"] = False
json.dump(config, open(sys.argv[1], "w"))
PY
echo "--- runc run (read-only root) of $name:"
# A server (recipes/tinyhttpd) runs until Ctrl-C. As the container's pid 1 it ignores the
# SIGINT runc would forward, so the demo kills the container itself; runc runs in the
# background only so that `wait` can be interrupted by the trap.
id="smith-demo-$name-$$"
trap 'runc kill "$id" KILL 2>/dev/null || true' INT TERM
runc run --bundle "$bundle" "$id" &
runc_pid=$!
status=0
wait "$runc_pid" || status=$?
if kill -0 "$runc_pid" 2>/dev/null; then  # interrupted: wait for the killed container
    wait "$runc_pid" || true
    status=0
fi
trap - INT TERM
[ "$status" -eq 0 ] || exit "$status"
echo "--- image: $(du -sb "out/$name.oci" | cut -f1) bytes in out/$name.oci," \
     "$(find "$bundle/rootfs" | wc -l) paths in its root filesystem"
