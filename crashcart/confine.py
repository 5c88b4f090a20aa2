"""What a session may do: capabilities, no_new_privs, a seccomp deny-list, the target's cgroups.

A session is run on behalf of an engineer inside a container that may be compromised: a
program planted there must get no more from crashcart than it would from `runc exec`.
So the command runs with only the capabilities debugging tools use (KEEP), with
no_new_privs (setuid programs and file capabilities of the target grant nothing), under a
seccomp filter denying what no debugging needs, and in the target's own cgroups
(crashcart/cgroups.py).

KEEP, and why each one (everything else is dropped, from the bounding set too):
- CAP_SYS_PTRACE: strace, gdb, ltrace attach to the target's processes, and /proc/PID/
  environ, maps, fd/* of processes of other users are read under the ptrace access check.
- CAP_DAC_READ_SEARCH: lsof and `ss -p` list /proc/PID/fd, a 0500 directory owned by the
  process's user (65534 in a typical microcontainer). This is also what open_by_handle_at
  needs to reach files outside the root (the "shocker" escape): the filter denies that call.
- CAP_KILL: signalling the target's processes, which run as other users.
- CAP_NET_RAW: ping and packet capture in the target's network namespace (runc exec and
  docker give it to every container process too).
Not kept: CAP_SYS_ADMIN (mounts, namespaces, bpf...), CAP_DAC_OVERRIDE (writing the
target's files is not debugging), CAP_SETUID/SETGID, CAP_NET_ADMIN.

libseccomp (Debian's libseccomp2, through ctypes) builds the filter: it knows each
architecture's syscall numbers and adds the architecture check a hand-written BPF program
would have to get right. Its compiled program is kept (seccomp_program) and loaded by the
command's process with prctl: nothing is read from the target's filesystem.
"""

from __future__ import annotations

import ctypes
import errno
import os

from crashcart.mount import check_result
from crashcart.record import record
from smith.errors import CrashcartError, UsageError

_libc = ctypes.CDLL(None, use_errno=True)

CAP_DAC_READ_SEARCH = 2
CAP_KILL = 5
CAP_NET_RAW = 13
CAP_SYS_PTRACE = 19
CAP_BPF = 39
KEEP = (CAP_DAC_READ_SEARCH, CAP_KILL, CAP_NET_RAW, CAP_SYS_PTRACE)
# What `--allow NAME` lifts, and only that: the system calls it takes out of the deny-list
# and the capabilities the session keeps besides KEEP. bpf() needs CAP_BPF (loading maps
# and programs: bpftool, the BPF-based tools); tracing programs attached with
# perf_event_open stay denied.
ALLOWABLE = {"bpf": (("bpf",), (CAP_BPF,))}

PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Denied with EPERM. None of these is needed to look at a running process; each one is a
# way out of the container or into the host kernel.
DENIED_SYSCALLS = (
    # Files outside the root by handle (with CAP_DAC_READ_SEARCH, kept for lsof).
    "open_by_handle_at",
    "name_to_handle_at",
    # The mount table: the session's private view must stay as crashcart made it.
    "mount",
    "umount2",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "pivot_root",
    # Other namespaces: the host's (setns by fd), or a new user namespace's capabilities.
    "setns",
    "unshare",
    # The kernel itself.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "iopl",
    "ioperm",
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "quotactl_fd",
    "lookup_dcookie",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    # Keyrings are not namespaced: the host's keys.
    "keyctl",
    "add_key",
    "request_key",
)
# clone with any of these flags makes a namespace (a user namespace needs no capability).
NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)
# Names the compiled program in SECCOMP_CACHE: bump it with any change to the rules.
FILTER_VERSION = 1
SECCOMP_CACHE = os.environ.get("CRASHCART_CACHE", "/var/cache/crashcart")
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_MASKED_EQ = 7
SCMP_ARCH_X86 = 0x40000003
SCMP_ARCH_X32 = 0x4000003E


@record
class Confinement:
    """What confines one session's command: the seccomp program, or None for --privileged
    (then only the namespaces and the target's cgroups, which the session joins, limit it),
    and the capabilities it keeps."""

    seccomp: bytes | None
    keep: tuple[int, ...] = KEEP

    @property
    def privileged(self) -> bool:
        return self.seccomp is None


def _errno_action(code: int) -> int:
    return 0x00050000 | (code & 0xFFFF)  # SCMP_ACT_ERRNO(code)


class _ArgCmp(ctypes.Structure):
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


def prctl(option: int, arg: int = 0) -> None:
    check_result(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def load_libseccomp() -> ctypes.CDLL:
    """libseccomp, opened on the host (see the module's docstring)."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        raise CrashcartError(
            "libseccomp.so.2 is not installed: the session cannot be confined",
            hint="install libseccomp2 (scripts/setup.sh does), or attach with --privileged",
        ) from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = (ctypes.c_uint32,)
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_rule_add_array.argtypes = (
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    )
    lib.seccomp_arch_add.argtypes = (ctypes.c_void_p, ctypes.c_uint32)
    lib.seccomp_export_bpf.argtypes = (ctypes.c_void_p, ctypes.c_int)
    lib.seccomp_release.argtypes = (ctypes.c_void_p,)
    return lib


def allowed(names: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(system calls, capabilities) that `--allow NAMES` lifts; an unknown name is refused."""
    calls: list[str] = []
    caps: list[int] = []
    for name in names:
        if name not in ALLOWABLE:
            known = ", ".join(sorted(ALLOWABLE))
            raise UsageError(f"--allow {name!r}: crashcart can allow only {known}")
        calls += ALLOWABLE[name][0]
        caps += ALLOWABLE[name][1]
    return tuple(sorted(set(calls))), tuple(sorted(set(caps)))


def confinement_for(allow: tuple[str, ...]) -> Confinement:
    """The session's confinement with what `--allow` lifts taken out of it."""
    calls, caps = allowed(allow)
    return Confinement(seccomp_program(calls), tuple(sorted({*KEEP, *caps})))


def _build_filter(lib: ctypes.CDLL, lifted: tuple[str, ...]) -> int:
    """The deny-list but `lifted` as a libseccomp filter context (the caller releases it)."""
    ctx = lib.seccomp_init(SCMP_ACT_ALLOW)
    if not ctx:
        raise OSError(errno.ENOMEM, "seccomp_init failed")
    # 32-bit programs get the same rules instead of being killed by the arch check.
    for arch in (SCMP_ARCH_X86, SCMP_ARCH_X32):
        lib.seccomp_arch_add(ctx, arch)  # EEXIST/EINVAL elsewhere: nothing to add
    deny = _errno_action(errno.EPERM)
    none = ctypes.POINTER(_ArgCmp)()
    for name in DENIED_SYSCALLS:
        if name in lifted:
            continue
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr >= 0:  # __NR_SCMP_ERROR (-1): not a syscall on this architecture
            check_result(lib.seccomp_rule_add_array(ctx, deny, nr, 0, none), f"seccomp {name}")
    clone = lib.seccomp_syscall_resolve_name(b"clone")
    for flag in NAMESPACE_FLAGS:
        cmp = _ArgCmp(0, SCMP_CMP_MASKED_EQ, flag, flag)
        check_result(lib.seccomp_rule_add_array(ctx, deny, clone, 1, cmp), "seccomp clone")
    # clone3 passes its flags in memory, where a filter cannot look: ENOSYS makes glibc
    # fall back to clone, whose flags the rules above see.
    clone3 = lib.seccomp_syscall_resolve_name(b"clone3")
    if clone3 >= 0:
        enosys = _errno_action(errno.ENOSYS)
        check_result(lib.seccomp_rule_add_array(ctx, enosys, clone3, 0, none), "seccomp clone3")
    return int(ctx)


def _cached_program(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != 0 or st.st_mode & 0o022:  # only root's own program is loaded
            return None
        program = os.read(fd, 1 << 16)
    finally:
        os.close(fd)
    return program if program and len(program) % 8 == 0 else None


def seccomp_program(lifted: tuple[str, ...] = ()) -> bytes:
    """The filter (without the denials of `lifted`) as a BPF program (struct sock_filter[]),
    ready for PR_SET_SECCOMP.

    libseccomp compiles it once per FILTER_VERSION, machine and lifted set into
    SECCOMP_CACHE: loading libseccomp and compiling the rules costs each attach 2-4 ms of
    CPU, reading the program a few microseconds."""
    variant = "".join(f"-{name}" for name in lifted)
    name = f"seccomp-{FILTER_VERSION}-{os.uname().machine}{variant}.bpf"
    path = os.path.join(SECCOMP_CACHE, name)
    program = _cached_program(path)
    if program is not None:
        return program
    lib = load_libseccomp()
    ctx = _build_filter(lib, lifted)
    try:
        os.makedirs(SECCOMP_CACHE, mode=0o755, exist_ok=True)
        partial = f"{path}.{os.getpid()}"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            check_result(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
        finally:
            os.close(fd)
        os.replace(partial, path)
    finally:
        lib.seccomp_release(ctx)
    program = _cached_program(path)
    if program is None:
        raise CrashcartError(f"libseccomp wrote no usable filter to {path}")
    return program


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


def load_seccomp_program(program: bytes) -> None:
    """Install the filter on the calling thread (needs no_new_privs first)."""
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    result = _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0)
    check_result(result, "prctl(PR_SET_SECCOMP)")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


def limit_bounding_set(keep: tuple[int, ...]) -> None:
    """Drop every capability but `keep` from the bounding set: no exec can bring one back.
    Needs CAP_SETPCAP, so it comes before the switch to the command's user."""
    for cap in range(64):  # the kernel's last capability is followed by EINVAL
        if cap in keep:
            continue
        if _libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0) < 0:
            if ctypes.get_errno() == errno.EINVAL:
                break
            check_result(-1, "prctl(PR_CAPBSET_DROP)")


def keep_capabilities(keep: tuple[int, ...]) -> None:
    """Only `keep` in the effective, permitted, inheritable and ambient sets, so that they
    survive the exec of a program run as any user. After the switch to the command's user
    (with PR_SET_KEEPCAPS set before it, so the permitted set is still there)."""
    words = [0, 0]
    for cap in keep:
        words[cap // 32] |= 1 << (cap % 32)
    data = (_CapData * 2)(*(_CapData(w, w, w) for w in words))
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    check_result(_libc.capset(ctypes.byref(header), data), "capset")
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    for cap in keep:
        # Ambient: kept across the exec of a program run as a non-root user too.
        check_result(_libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0), "ambient")
