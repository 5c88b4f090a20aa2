#!/usr/bin/env bash
# Installs everything smith and its tests need on a Debian 12 machine (as root): the Debian
# packages of the real tools the tests drive, and a virtualenv (.venv) with pinned
# dependencies. Idempotent: a second run installs nothing new and takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
    python3 python3-venv python3-dev gcc make
    runc crun skopeo umoci docker-registry docker.io containerd podman buildah
    rpm createrepo-c gnupg busybox-static pax-utils python3-pyelftools mmdebstrap
    pigz  # bench/bench_minimize.py: the `pigz -dc` floor
    disorderfs fuse3 patchelf strace gdb lsof curl iproute2 cpio tar gzip zstd openssl
    libseccomp2 libc6-dev  # crashcart: its seccomp filter; its tests' static programs
    diffoscope-minimal  # only for bench/bench_diff.py (smith diff against diffoscope)
    qemu-user-static  # runs the aarch64 programs of multi-architecture builds
)

# The aarch64 fixture universe repackages Debian's arm64 packages (apt-get download PKG:arm64):
# apt must know the architecture and have its package lists.
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: adding the arm64 architecture to dpkg needs root" >&2
        exit 1
    fi
    echo "setup: adding the arm64 architecture"
    dpkg --add-architecture arm64
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
fi

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON=${SMITH_PYTHON:-python3}
pip=(.venv/bin/pip install -q --disable-pip-version-check)
quiet() { "$@" 2> >(grep -v 'is ignored: it is neither' >&2); }  # pip notes some configs print
# requirements.txt: smith's run-time pins; requirements-test.txt adds the test and lint tools.
if [ ! -x .venv/bin/python ] || ! cat requirements.txt requirements-test.txt | cmp -s - .venv/requirements.txt; then
    echo "setup: creating .venv with $($PYTHON --version)"
    rm -rf .venv
    "$PYTHON" -m venv .venv
    quiet "${pip[@]}" -r requirements-test.txt
    cat requirements.txt requirements-test.txt >.venv/requirements.txt
fi
# What the editable install copies: the project's metadata and the crashcart script.
if ! cat pyproject.toml bin/crashcart bin/smith | cmp -s - .venv/install-inputs; then
    # compat mode puts the checkout itself on sys.path: new modules need no reinstall.
    quiet "${pip[@]}" --no-deps --config-settings editable_mode=compat -e .
    cat pyproject.toml bin/crashcart bin/smith >.venv/install-inputs
fi
# The .venv's `smith` is bin/launcher.c in front of the script pip installed (moved to
# smith-script): it starts the interpreter with SIGINT and SIGTERM blocked, so a signal in
# the interpreter's own start is handled by the script, not lost (see bin/launcher.c).
if [ "$(head -c 2 .venv/bin/smith)" = "#!" ] || ! cmp -s bin/launcher.c .venv/launcher-inputs; then
    if [ "$(head -c 2 .venv/bin/smith)" = "#!" ]; then
        mv .venv/bin/smith .venv/bin/smith-script
    fi
    bindir="$PWD/.venv/bin"
    cc -O2 -Wall -Wextra -Werror -static -DSMITH_PYTHON="\"$bindir/python3\"" \
        -DSMITH_SCRIPT="\"$bindir/smith-script\"" -o .venv/bin/smith.new bin/launcher.c
    mv .venv/bin/smith.new .venv/bin/smith
    cp bin/launcher.c .venv/launcher-inputs
fi
# Byte-compile the checkout: where PYTHONDONTWRITEBYTECODE is set, every smith or crashcart
# command would otherwise compile its modules from source on each start.
.venv/bin/python -m compileall -q smith crashcart >/dev/null
