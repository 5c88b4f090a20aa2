#!/usr/bin/env bash
# Sets everything up, writes a small image with smith and runs it with runc (read-only
# root), then shows what it printed and the image's digest and size.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
out=${SMITH_DEMO_DIR:-out/demo}
mkdir -p "$out"
.venv/bin/python - "$out" <<'PY'
import sys
from smith.oci.image import ImageConfig
from smith.oci.output import write_image
from smith.tree import FileTree, HostFile, InlineBytes

tree = FileTree()
tree.add_file("bin/busybox", HostFile("/bin/busybox"), 0o755)
tree.add_file("etc/motd", InlineBytes(b"hello from a smith microcontainer\n"))
for d in ("dev", "proc", "sys", "run", "write", "read"):
    tree.add_dir(d)
config = ImageConfig(entrypoint=("/bin/busybox",), cmd=("cat", "/etc/motd"))
result = write_image(tree, config, f"{sys.argv[1]}/image", tag="demo")
print(f"image {result.manifest.digest}, layer {result.layers[0].descriptor.size} bytes")
PY
rm -rf "$out/bundle"
umoci unpack --image "$out/image:demo" "$out/bundle" >/dev/null
.venv/bin/python - "$out/bundle/config.json" <<'PY'
import json, sys
config = json.load(open(sys.argv[1]))
config["root"]["readonly"] = True
config["process"]["terminal"] = False
json.dump(config, open(sys.argv[1], "w"))
PY
echo "runc run (read-only root):"
runc run --bundle "$out/bundle" "smith-demo-$$"
