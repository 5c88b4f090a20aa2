"""A realistic package universe, built with the real tools: rpmbuild, createrepo_c, rpmsign.

Host binaries and libraries (Debian's glibc, zlib, openssl, pcre2, curl and its whole
library closure, coreutils, busybox, and crashcart's toolbox: strace, lsof, iproute2 and
gdb from Debian's gdb-minimal, with their closures) and two small programs compiled here
(hello, and tinyhttpd, an HTTP server that looks its user up through NSS) are packaged
with rpmbuild, so the automatic dependency generator writes real soname Requires and
Provides. Libraries go where Debian's own ld.so looks for them (/usr/lib/x86_64-linux-gnu),
so images built from this universe run on this host.

`build_universe(dest)` writes, under dest:
  repos/main      every package; metadata gzip (sha256)
  repos/main-xz   the same packages; metadata xz
  repos/main-zst  the same packages; metadata zstd (PyPI createrepo_c)
  repos/main-bz2  the same packages; metadata bzip2 with sha1 checksums
  repos/extra     tinyhttpd 2.0 (a newer version, for priorities)
  repos/signed-rsa, repos/signed-ed  a few packages signed by rpmsign with an RSA or an
                  EdDSA key made by gpg; the public keys are keys/rsa.asc and keys/ed.asc
A test gets it through the `rpm_universe` fixture (tests/conftest.py): `.repo_dir(name)`,
`.repo_url(name)` (served over HTTP on 127.0.0.1 for the session), `.key(name)`.

Golden digests never come from this universe: it changes whenever Debian updates the
binaries it packages. They come from the `frozen_universe` fixture, a copy built once and
kept in ../shared/universe (same layout, never rebuilt).
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tools import require_shared, require_tool

LIBDIR = "/usr/lib/x86_64-linux-gnu"
HOST_LIBDIR = Path(LIBDIR)

# Packages whose libraries are grouped as a distribution would group them.
LIB_GROUPS = {
    "glibc": [
        "libc.so.6",
        "ld-linux-x86-64.so.2",
        "libm.so.6",
        "libresolv.so.2",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libnss_files.so.2",
        "libnss_dns.so.2",
    ],
    "zlib": ["libz.so.1"],
    "openssl-libs": ["libssl.so.3", "libcrypto.so.3"],
    "pcre2": ["libpcre2-8.so.0"],
    "libcurl": ["libcurl.so.4"],
    "krb5-libs": [
        "libgssapi_krb5.so.2",
        "libkrb5.so.3",
        "libk5crypto.so.3",
        "libkrb5support.so.0",
        "libcom_err.so.2",
        "libkeyutils.so.1",
    ],
    "openldap": ["libldap-2.5.so.0", "liblber-2.5.so.0"],
    "nettle": ["libnettle.so.8", "libhogweed.so.6"],
    "brotli": ["libbrotlidec.so.1", "libbrotlicommon.so.1"],
    "libunwind": ["libunwind.so.8", "libunwind-ptrace.so.0", "libunwind-x86_64.so.8"],
}

BINARIES = {
    "coreutils": ["/usr/bin/cat", "/usr/bin/ls", "/usr/bin/echo", "/usr/bin/true"],
    "curl": ["/usr/bin/curl"],
}

# crashcart's toolbox (recipes/crashcart-toolbox): package -> (host file, packaged path).
# iproute2 goes to /usr/sbin as on Fedora; gdb is Debian's gdb-minimal (no libpython), whose
# .deb is fetched with `apt-get download` because it conflicts with the installed gdb.
TOOLS = {
    "strace": [("/usr/bin/strace", "/usr/bin/strace")],
    "lsof": [("/usr/bin/lsof", "/usr/bin/lsof")],
    "iproute2": [("/usr/bin/ip", "/usr/sbin/ip"), ("/usr/bin/ss", "/usr/sbin/ss")],
    "gdb": [("deb:gdb-minimal/usr/bin/gdb", "/usr/bin/gdb")],
}
DEB_CACHE = Path("/var/cache/crashcart/debs")

HELLO_C = r"""
#include <stdio.h>
int main(void) { puts("hello from smith"); return 0; }
"""

# A tiny HTTP/1.0 server: serves one directory, drops to a named user found through NSS
# (getpwnam), so an image of it needs /etc/passwd, nsswitch.conf and libnss_files.
TINYHTTPD_C = r"""
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    const char *root = argc > 2 ? argv[2] : "/srv";
    const char *user = argc > 3 ? argv[3] : "nobody";
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 16)) { perror("bind"); return 1; }
    struct passwd *pw = getpwnam(user);
    if (!pw) { fprintf(stderr, "tinyhttpd: unknown user %s\n", user); return 1; }
    if (getuid() == 0 && (setgid(pw->pw_gid) || setuid(pw->pw_uid))) { perror("setuid"); return 1; }
    printf("tinyhttpd: serving %s on port %d as %s\n", root, port, user);
    fflush(stdout);
    for (;;) {
        int c = accept(s, 0, 0);
        if (c < 0) continue;
        char req[2048] = {0}, path[4096];
        read(c, req, sizeof req - 1);
        char name[1024] = "/";
        sscanf(req, "GET %1023s", name);
        if (strstr(name, "..")) { close(c); continue; }
        snprintf(path, sizeof path, "%s%s", root, name);
        int f = open(path, O_RDONLY);
        if (f < 0) { dprintf(c, "HTTP/1.0 404 Not Found\r\n\r\n"); close(c); continue; }
        dprintf(c, "HTTP/1.0 200 OK\r\n\r\n");
        char buf[65536]; ssize_t n;
        while ((n = read(f, buf, sizeof buf)) > 0) write(c, buf, n);
        close(f); close(c);
    }
}
"""

RPMBUILD_DEFINES = [
    "--define",
    "_build_id_links none",
    "--define",
    "__os_install_post %{nil}",
    "--define",
    "_source_payload w9.gzdio",
    "--nodeps",
]


@dataclass(frozen=True)
class Universe:
    root: Path
    base_url: str = ""  # http://127.0.0.1:PORT/ while the session's server runs

    def repo_dir(self, name: str = "main") -> Path:
        return self.root / "repos" / name

    def repo_url(self, name: str = "main") -> str:
        return f"{self.base_url}repos/{name}/" if self.base_url else str(self.repo_dir(name))

    def key(self, name: str) -> Path:
        return self.root / "keys" / f"{name}.asc"

    def packages(self, name: str = "main") -> list[Path]:
        return sorted(self.repo_dir(name).glob("*.rpm"))


# -- Debian packages that are not installed ----------------------------------------------------


def debian_package(package: str, arch: str = "", version: str = "") -> tuple[Path, Path]:
    """(the .deb, the directory it is unpacked in) under DEB_CACHE, fetched with
    `apt-get download` the first time (this works on a fresh machine). `arch` is a foreign
    Debian architecture (arm64: scripts/setup.sh adds it), cached apart so that a glob for
    one architecture's .deb never finds another's; `version`, that version only (which
    Debian's mirrors serve only until an update replaces it)."""
    cache = DEB_CACHE.with_name(f"debs-{arch}") if arch else DEB_CACHE
    cache.mkdir(parents=True, exist_ok=True)
    # apt names a file with the epoch's colon %-quoted: 1:1.2 -> 1%3a1.2.
    pattern = f"{package}_{version.replace(':', '%3a')}_*.deb" if version else f"{package}_*.deb"
    debs = sorted(cache.glob(pattern))
    if not debs:
        name = f"{package}:{arch}" if arch else package
        subprocess.run(
            [require_tool("apt-get"), "download", f"{name}={version}" if version else name],
            cwd=cache,
            capture_output=True,
            check=False,
        )
        debs = sorted(cache.glob(pattern))
    if not debs:
        wanted = f"{package} {version}" if version else package
        raise RuntimeError(f"cannot fetch the Debian package {wanted} (apt-get download)")
    root = cache / f"{debs[-1].name}.root"
    if not root.is_dir():
        partial = Path(tempfile.mkdtemp(dir=cache))
        subprocess.run([require_tool("dpkg-deb"), "-x", str(debs[-1]), str(partial)], check=True)
        partial.rename(root)
    return debs[-1], root


def tool_source(source: str) -> str:
    """A TOOLS source on the host: a path, or `deb:PACKAGE/PATH` inside a fetched .deb."""
    if not source.startswith("deb:"):
        return source
    package, _, inside = source[4:].partition("/")
    return str(debian_package(package)[1] / inside)


# -- library closure --------------------------------------------------------------------------


def ldd_closure(paths: list[str]) -> dict[str, str]:
    """soname -> host path of every library the given ELF files need (ldd's answer)."""
    out: dict[str, str] = {}
    for p in paths:
        proc = subprocess.run(["ldd", p], capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            m = re.match(r"\s*(\S+) => (\S+)", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def package_of(soname: str) -> str:
    for pkg, names in LIB_GROUPS.items():
        if soname in names:
            return pkg
    return soname.split(".so")[0]


# -- spec writing -----------------------------------------------------------------------------


def _lib_files(sonames: list[str]) -> tuple[list[str], list[str]]:
    """(install commands, %files lines): the real file under its own name, soname links."""
    install, files = [], []
    for so in sonames:
        host = HOST_LIBDIR / so
        if not host.exists():
            continue
        real = host.resolve()
        install.append(f"install -D -m 0755 {real} %{{buildroot}}{LIBDIR}/{real.name}")
        files.append(f"{LIBDIR}/{real.name}")
        if real.name != so:
            install.append(f"ln -sf {real.name} %{{buildroot}}{LIBDIR}/{so}")
            files.append(f"{LIBDIR}/{so}")
    return install, files


@dataclass
class SubPackage:
    name: str
    summary: str
    install: list[str]
    files: list[str]
    extra: list[str]  # more preamble lines: Provides, Requires, BuildArch


def _spec(name: str, version: str, release: str, subs: list[SubPackage], payload: str) -> str:
    lines = [
        "%global debug_package %{nil}",
        f"%define _binary_payload {payload}",
        f"Name: {name}",
        f"Version: {version}",
        f"Release: {release}",
        "Summary: smith test universe",
        "License: MIT",
        "%description",
        "Packages for smith's tests.",
    ]
    for sp in subs:
        lines += [f"%package -n {sp.name}", f"Summary: {sp.summary}", *sp.extra]
        lines += [f"%description -n {sp.name}", sp.summary + "."]
    lines += ["%install", "mkdir -p %{buildroot}"]
    for sp in subs:
        lines += sp.install
    for sp in subs:
        lines += [f"%files -n {sp.name}", *sp.files]
    return "\n".join(lines) + "\n"


def filesystem_package(libdir: str, *, lib64: bool) -> SubPackage:
    """The directory skeleton (merged /usr) with the distribution's library directory
    (and /usr/lib64 with its /lib64 link, for x86_64)."""
    lib64_dirs = " usr/lib64" if lib64 else ""
    return SubPackage(
        "filesystem",
        "The directory skeleton (merged /usr)",
        [
            f"cd %{{buildroot}} && mkdir -p etc usr/bin usr/sbin{lib64_dirs} var/log tmp root srv",
            f"mkdir -p %{{buildroot}}{libdir}",
            "ln -s usr/bin %{buildroot}/bin",
            "ln -s usr/sbin %{buildroot}/sbin",
            "ln -s usr/lib %{buildroot}/lib",
            *(["ln -s usr/lib64 %{buildroot}/lib64"] if lib64 else []),
        ],
        [
            "%dir /etc",
            "%dir /usr",
            "%dir /usr/bin",
            "%dir /usr/sbin",
            "%dir /usr/lib",
            *(["%dir /usr/lib64"] if lib64 else []),
            f"%dir {libdir}",
            "%dir /var",
            "%dir /var/log",
            "%attr(1777,root,root) %dir /tmp",
            "%attr(0700,root,root) %dir /root",
            "%dir /srv",
            "/bin",
            "/sbin",
            "/lib",
            *(["/lib64"] if lib64 else []),
        ],
        ["BuildArch: noarch"],
    )


def _main_subpackages(work: Path) -> list[SubPackage]:
    gcc = require_tool("gcc")
    for prog, src in (("hello", HELLO_C), ("tinyhttpd", TINYHTTPD_C)):
        (work / f"{prog}.c").write_text(src)
        subprocess.run([gcc, "-O2", "-o", str(work / prog), str(work / f"{prog}.c")], check=True)
    elf_roots = [p for ps in BINARIES.values() for p in ps] + [str(work / "hello")]
    elf_roots += [tool_source(src) for files in TOOLS.values() for src, _ in files]
    elf_roots += [
        str(work / "tinyhttpd"),
        f"{LIBDIR}/libnss_files.so.2",
        f"{LIBDIR}/libnss_dns.so.2",
    ]
    closure = ldd_closure(elf_roots)
    by_pkg: dict[str, list[str]] = {}
    for so in sorted(closure):
        by_pkg.setdefault(package_of(so), []).append(so)
    for so in LIB_GROUPS["glibc"]:
        if so not in by_pkg["glibc"]:
            by_pkg["glibc"].append(so)

    subs = [
        filesystem_package(LIBDIR, lib64=True),
        SubPackage(
            "setup",
            "System users, groups and the NSS configuration",
            [
                "mkdir -p %{buildroot}/etc %{buildroot}/var/log",
                "printf 'root:x:0:0:root:/root:/bin/sh\\n"
                "nobody:x:65534:65534:nobody:/:/sbin/nologin\\n'"
                " > %{buildroot}/etc/passwd",
                "printf 'root:x:0:\\nnobody:x:65534:\\n' > %{buildroot}/etc/group",
                "printf 'passwd: files\\ngroup: files\\nhosts: files dns\\n'"
                " > %{buildroot}/etc/nsswitch.conf",
            ],
            [
                "%config(noreplace) /etc/passwd",
                "%config(noreplace) /etc/group",
                "%config(noreplace) /etc/nsswitch.conf",
                "%ghost /var/log/lastlog",
            ],
            ["BuildArch: noarch", "Requires: filesystem"],
        ),
        SubPackage(
            "ca-certificates",
            "Trusted CA certificates",
            [
                "install -D -m 0644 /etc/ssl/certs/ca-certificates.crt"
                " %{buildroot}/etc/ssl/certs/ca-certificates.crt"
            ],
            ["/etc/ssl/certs/ca-certificates.crt"],
            ["BuildArch: noarch"],
        ),
        SubPackage(
            "ncurses-base",
            "Terminal descriptions",
            ["mkdir -p %{buildroot}/usr/share && cp -r /lib/terminfo %{buildroot}/usr/share/"],
            ["/usr/share/terminfo"],
            ["BuildArch: noarch"],
        ),
        SubPackage(
            "busybox",
            "Static multi-call binary",
            [
                "install -D -m 0755 /usr/bin/busybox %{buildroot}/usr/bin/busybox",
                "ln -s busybox %{buildroot}/usr/bin/sh",
            ],
            ["/usr/bin/busybox", "/usr/bin/sh"],
            [],
        ),
    ]
    for prog, dest, extra in (
        ("hello", "/usr/bin/hello", []),
        ("tinyhttpd", "/usr/sbin/tinyhttpd", ["Provides: webserver", "Requires: setup"]),
    ):
        subs.append(
            SubPackage(
                prog,
                f"The {prog} program",
                [f"install -D -m 0755 {work / prog} %{{buildroot}}{dest}"],
                [dest],
                extra,
            )
        )
    for pkg, paths in BINARIES.items():
        extra = ["Requires: ca-certificates"] if pkg == "curl" else []
        subs.append(
            SubPackage(
                pkg,
                f"Programs from {pkg}",
                [f"install -D -m 0755 {p} %{{buildroot}}{p}" for p in paths],
                paths,
                extra,
            )
        )
    for pkg, tool_files in TOOLS.items():
        subs.append(
            SubPackage(
                pkg,
                f"The {pkg} programs",
                [
                    f"install -D -m 0755 {tool_source(src)} %{{buildroot}}{dest}"
                    for src, dest in tool_files
                ],
                [dest for _, dest in tool_files],
                [],
            )
        )
    for pkg, sonames in sorted(by_pkg.items()):
        install, files = _lib_files(sonames)
        if pkg == "glibc":
            # Debian binaries name /lib64/ld-linux-x86-64.so.2 as their interpreter.
            install.append("mkdir -p %{buildroot}/usr/lib64")
            install.append(
                "ln -sf ../lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
                " %{buildroot}/usr/lib64/ld-linux-x86-64.so.2"
            )
            files.append("/usr/lib64/ld-linux-x86-64.so.2")
        extra = ["Requires: filesystem"]
        if pkg == "glibc":
            extra += ["Provides: rtld(GNU_HASH)"]
        subs.append(SubPackage(pkg, f"The {pkg} libraries", install, files, extra))
    return subs


def _simple(name: str, extra: list[str], *, arch: str = "") -> SubPackage:
    return SubPackage(
        name,
        f"Test package {name}",
        [
            f"mkdir -p %{{buildroot}}/usr/share/{name}",
            f"echo {name} > %{{buildroot}}/usr/share/{name}/README",
        ],
        [f"/usr/share/{name}/README"],
        [*extra, *([f"BuildArch: {arch}"] if arch else [])],
    )


def _rpmbuild(spec: Path, topdir: Path, target: str = "") -> None:
    rpmbuild = require_tool("rpmbuild")
    cmd = [rpmbuild, "-bb", "--quiet", "--define", f"_topdir {topdir}", *RPMBUILD_DEFINES]
    if target:
        cmd += ["--target", target]
    proc = subprocess.run([*cmd, str(spec)], capture_output=True, text=True, check=False)
    if proc.returncode:
        raise RuntimeError(f"rpmbuild {spec.name} failed:\n{proc.stderr[-3000:]}")


def _createrepo(repo: Path, *args: str, tool: str = "") -> None:
    cmd = tool or require_tool("createrepo_c")
    subprocess.run([cmd, "--quiet", "--no-database", *args, str(repo)], check=True)


def _gpg_key(gnupg: Path, uid: str, algo: str, export: Path) -> None:
    gpg = require_tool("gpg")
    env = {**os.environ, "GNUPGHOME": str(gnupg)}
    subprocess.run(
        [gpg, "--batch", "--passphrase", "", "--quick-gen-key", uid, algo, "sign", "never"],
        env=env,
        check=True,
        capture_output=True,
    )
    pub = subprocess.run(
        [gpg, "--armor", "--export", uid], env=env, check=True, capture_output=True
    ).stdout
    export.write_bytes(pub)


def _sign(rpms: list[Path], gnupg: Path, uid: str) -> None:
    rpmsign = require_tool("rpmsign")
    subprocess.run(
        [
            rpmsign,
            "--addsign",
            "--define",
            f"__gpg {require_tool('gpg')}",
            "--define",
            f"_gpg_name {uid}",
            "--define",
            f"_gpg_path {gnupg}",
            *map(str, rpms),
        ],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )


def build_universe(dest: Path) -> Universe:
    """Build every package and repository under `dest` (which must not exist yet)."""
    work = Path(tempfile.mkdtemp(prefix="universe-"))
    try:
        specs = work / "specs"
        specs.mkdir()
        jobs: list[tuple[Path, Path, str]] = []

        def add_spec(name: str, text: str, target: str = "") -> None:
            (specs / f"{name}.spec").write_text(text)
            jobs.append((specs / f"{name}.spec", work / f"top-{name}", target))

        add_spec("universe", _spec("universe", "1.0", "1", _main_subpackages(work), "w3.zstdio"))
        # A newer zlib release (gzip payload): resolution must pick the newest.
        zlib_install, zlib_files = _lib_files(["libz.so.1"])
        add_spec(
            "zlib2",
            _spec(
                "zlib2",
                "1.0",
                "2",
                [
                    SubPackage(
                        "zlib", "zlib, rebuilt", zlib_install, zlib_files, ["Requires: filesystem"]
                    )
                ],
                "w9.gzdio",
            ),
        )
        add_spec(
            "misc",
            _spec(
                "misc",
                "1.0",
                "1",
                [
                    _simple("webtools", ["Requires: webserver", "Recommends: busybox"]),
                    _simple("broken", ["Requires: libmissing.so.1()(64bit)"]),
                    _simple("conflicts-glibc", ["Conflicts: glibc"]),
                    _simple("docs-noarch", [], arch="noarch"),
                ],
                "w6.xzdio",
            ),
        )
        add_spec(
            "i686", _spec("lib32", "1.0", "1", [_simple("lib32-demo", [])], "w9.bzdio"), "i686"
        )
        tiny = [
            SubPackage(
                "tinyhttpd",
                "tinyhttpd 2.0",
                [f"install -D -m 0755 {work / 'tinyhttpd'} %{{buildroot}}/usr/sbin/tinyhttpd"],
                ["/usr/sbin/tinyhttpd"],
                ["Provides: webserver", "Requires: setup"],
            )
        ]
        add_spec("extra", _spec("extra", "2.0", "1", tiny, "w2.lzdio"))
        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            list(ex.map(lambda j: _rpmbuild(*j), jobs))

        repos = dest / "repos"
        main = repos / "main"
        main.mkdir(parents=True)
        for _spec_path, top, _ in jobs[:-1]:
            for rpm in (top / "RPMS").rglob("*.rpm"):
                shutil.copy2(rpm, main / rpm.name)
        extra = repos / "extra"
        extra.mkdir()
        for rpm in (jobs[-1][1] / "RPMS").rglob("*.rpm"):
            shutil.copy2(rpm, extra / rpm.name)

        wheel_createrepo = str(Path(sys.executable).parent / "createrepo_c")
        variants = {
            "main-xz": ["--general-compress-type", "xz"],
            "main-zst": ["--general-compress-type", "zstd"],
            "main-bz2": ["--general-compress-type", "bz2", "--checksum", "sha1"],
        }
        for name in variants:
            (repos / name).mkdir()
            for rpm in main.glob("*.rpm"):
                os.link(rpm, repos / name / rpm.name)

        keys = dest / "keys"
        keys.mkdir()
        gnupg = work / "gnupg"
        gnupg.mkdir(mode=0o700)
        signed_names = ("hello", "glibc", "filesystem")
        for key, algo in (("rsa", "rsa3072"), ("ed", "ed25519")):
            uid = f"smith-test-{key}"
            _gpg_key(gnupg, uid, algo, keys / f"{key}.asc")
            repo = repos / f"signed-{key}"
            repo.mkdir()
            rpms = []
            for rpm in main.glob("*.rpm"):
                if rpm.name.rsplit("-", 2)[0] in signed_names:
                    shutil.copy2(rpm, repo / rpm.name)
                    rpms.append(repo / rpm.name)
            _sign(sorted(rpms), gnupg, uid)

        with concurrent.futures.ThreadPoolExecutor(3) as ex:
            futs = [ex.submit(_createrepo, main, "--general-compress-type", "gz")]
            futs.append(ex.submit(_createrepo, extra))
            futs += [ex.submit(_createrepo, repos / k) for k in ("signed-rsa", "signed-ed")]
            futs += [
                ex.submit(
                    _createrepo, repos / n, *a, tool=wheel_createrepo if n == "main-zst" else ""
                )
                for n, a in variants.items()
            ]
            for fut in futs:
                fut.result()
        return Universe(dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def universe_key() -> str:
    """A hash of everything the universe is built from: this file and the host inputs."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    inputs = [*(p for ps in BINARIES.values() for p in ps), "/usr/bin/busybox"]
    inputs += [tool_source(src) for files in TOOLS.values() for src, _ in files]
    inputs += [str(HOST_LIBDIR / so) for names in LIB_GROUPS.values() for so in names]
    for p in sorted(inputs):
        try:
            st = os.stat(p)
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{p}:missing\n".encode())
    return h.hexdigest()[:16]


def cached_universe(
    cache_root: Path, key: str = "", build: Callable[[Path], Universe] = build_universe
) -> Universe:
    """The universe from `cache_root/<key>` (default: `universe_key()`), building it there
    first with `build` if needed."""
    final = cache_root / (key or universe_key())
    if not (final / "done").exists():
        cache_root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="building-", dir=cache_root))
        shutil.rmtree(tmp)
        build(tmp)
        (tmp / "done").write_text("")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        # Universes built from older inputs are never used again.
        for old in cache_root.iterdir():
            if old != final and not old.name.startswith("building-"):
                shutil.rmtree(old, ignore_errors=True)
    return Universe(final)


def start_http_server(root: Path) -> tuple[subprocess.Popen[str], str]:
    """`python3 -m http.server` on 127.0.0.1 serving `root`; returns (process, base URL)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "http.server",
            "0",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(root),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"port (\d+)", line)
    if not m:
        proc.kill()
        raise RuntimeError(f"http.server did not start: {line!r}")
    return proc, f"http://127.0.0.1:{m.group(1)}/"


if __name__ == "__main__":  # build one by hand: python -m tests.rpm_universe DEST
    print(build_universe(Path(sys.argv[1])).root)


def frozen_universe_dir() -> Path:
    """../shared/universe: the universe built once and kept unchanged (its README).

    Golden digests are recorded from it and checked against it, never from a universe
    rebuilt here: that one packages this machine's Debian binaries, which change with every
    Debian point release or security update.
    """
    return require_shared(
        "universe", purpose="golden recipe digests are checked only against its frozen packages"
    )


def served(universe: Universe) -> Iterator[Universe]:
    """Yields `universe` served over HTTP on 127.0.0.1; stops the server when resumed."""
    proc, url = start_http_server(universe.root)
    try:
        yield Universe(universe.root, url)
    finally:
        proc.terminate()
        proc.wait()


@pytest.fixture(scope="session")
def frozen_universe() -> Iterator[Universe]:
    """The frozen universe of ../shared, served on 127.0.0.1 for the whole session.

    In a user's fresh clone (no ../shared) the tests that need it skip, saying so; in CI
    (CI=true) they fail instead.
    """
    yield from served(Universe(frozen_universe_dir()))


@pytest.fixture(scope="session")
def rpm_universe(request: pytest.FixtureRequest) -> Iterator[Universe]:
    """The universe, served over HTTP on 127.0.0.1 for the whole session.

    Cached under pytest's cache dir keyed by `universe_key()`; SMITH_UNIVERSE_REBUILD=1 (or a
    clean checkout) builds it from scratch.
    """
    for tool in ("rpmbuild", "createrepo_c", "rpmsign", "gpg", "gcc", "ldd", "dpkg-deb"):
        require_tool(tool)
    cache_plugin = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    if cache_plugin is not None:
        cache = Path(cache_plugin.mkdir("smith-rpm-universe"))
    else:
        cache = request.getfixturevalue("tmp_path_factory").mktemp("smith-rpm-universe")
    if os.environ.get("SMITH_UNIVERSE_REBUILD"):
        shutil.rmtree(cache / universe_key(), ignore_errors=True)
    yield from served(cached_universe(cache))
