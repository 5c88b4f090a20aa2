"""The microcontainer conventions, applied to a kept tree by `smith build` and `smith minimize`.

From the Smith manifesto (docs/ARCHITECTURE.md, "Microcontainer rules"):
- files carry no user ownership or special permissions beyond the executable bit: every
  entry is owned by the runtime user (numeric), modes are reduced to 0755 (directories and
  anything executable) or 0644, never setuid/setgid/sticky; the tree model carries no
  xattrs and no devices, so none can reach the layer;
- the root runs read-only: `/write` (writes), `/read` (per-instance configuration) and
  `/run` (pid files, sockets) exist as empty directories for the runtime to mount on, as do
  `/dev`, `/proc` and `/sys`;
- optionally a minimal NSS: `/etc/passwd`, `/etc/group` and `/etc/nsswitch.conf` written by
  smith (complete lines with trailing newlines, which the original tool forgot), for a
  program that looks its user up by name. The libnss modules those files need are the
  closure's business (its opt-in NSS set), not this module's.

Everything here is a pure function of the tree and the options: no host user database, no
umask, no clock.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from smith.errors import UsageError
from smith.limits import MAX_ID
from smith.tree import Entry, FileTree, InlineBytes, Kind

# The original smith's runtime user and group when a recipe names none: "smith", id 10.
DEFAULT_ID = 10
DEFAULT_NAME = "smith"
RUNTIME_DIRS = ("dev", "proc", "read", "run", "sys", "write")
# Emptied: the kernel's filesystems are mounted over /dev, /proc and /sys (and a
# microcontainer carries no device nodes); /run is for the running instance's pid files and
# sockets, so whatever an image left there is stale. What is below /read and /write is kept:
# the original smith's own README example ships its data in /read.
EMPTIED_DIRS = ("dev", "proc", "run", "sys")
NSS_FILES = ("etc/group", "etc/nsswitch.conf", "etc/passwd")
ORIGIN = "microcontainer conventions"

# The accounts the original always wrote; their ids are never reused for the runtime user.
BASE_USERS = (("root", 0), ("daemon", 1), ("bin", 2), ("sys", 3))
BASE_GROUPS = (("root", 0), ("daemon", 1), ("bin", 2), ("sys", 3), ("adm", 4), ("tty", 5))
# What a name in /etc/passwd and /etc/group cannot hold: ':' separates fields, ',' group
# members, and whitespace or a control character (a newline) would break the line.
NAME_BREAKERS = re.compile(r"[:,\s\x00-\x1f\x7f]")
NSSWITCH = b"passwd:     files\nshadow:     files\ngroup:      files\nhosts:      files dns\n"


@dataclass(frozen=True)
class RuntimeUser:
    """Who the container runs as: numeric ids, and names for NSS when it has any."""

    uid: int = DEFAULT_ID
    gid: int = DEFAULT_ID
    name: str = DEFAULT_NAME
    group: str = DEFAULT_NAME
    groups: tuple[str, ...] = ()  # supplementary groups (the recipe's `groups`)

    @property
    def config_user(self) -> str:
        """The image config's `User`: numeric, so that no /etc/passwd is needed to run."""
        return f"{self.uid}:{self.gid}"


ROOT = RuntimeUser(0, 0, "root", "root")


@dataclass(frozen=True)
class Conventions:
    user: RuntimeUser = field(default_factory=RuntimeUser)
    keep_ownership: bool = False  # keep each entry's uid/gid as the input had them
    keep_modes: bool = False  # keep permission bits (special bits included) as they were
    nss: bool = False  # write /etc/passwd, /etc/group, /etc/nsswitch.conf


def parse_user(
    spec: str,
    *,
    passwd: dict[str, tuple[int, int]] | None = None,
    group: dict[str, int] | None = None,
) -> RuntimeUser:
    """`USER[:GROUP]` as in an OCI config or a recipe: numbers, or names looked up in the
    given databases (an image's own /etc/passwd), else in the accounts smith writes."""
    users = dict(passwd or {})
    groups = dict(group or {})
    for name, ident in BASE_USERS:
        users.setdefault(name, (ident, ident))
    for name, ident in BASE_GROUPS:
        groups.setdefault(name, ident)
    user_part, _, group_part = spec.partition(":")
    if not user_part:
        raise UsageError(f"a user must be NAME or UID, optionally :GROUP or :GID, not {spec!r}")
    for part in (user_part, group_part):
        check_name(part, spec)
        if part.startswith("-") and part[1:].isdigit():  # "-5" is no name, and no id
            raise UsageError(f"user id out of range (0 to {MAX_ID}) in {spec!r}")
    if is_number(user_part):
        uid, name = int(user_part), _name_of(users, int(user_part)) or f"u{user_part}"
        default_gid = users.get(name, (uid, uid))[1]
    elif user_part in users:
        name = user_part
        uid, default_gid = users[user_part]
    else:
        # A new name: the original's default id, so `user: smith` and no user agree.
        name, uid, default_gid = user_part, DEFAULT_ID, DEFAULT_ID
    if not group_part:
        gid = default_gid
        gname = next((g for g, i in groups.items() if i == gid), name)
    elif is_number(group_part):
        gid = int(group_part)
        gname = next((g for g, i in groups.items() if i == gid), f"g{group_part}")
    else:
        gname = group_part
        gid = groups.get(group_part, DEFAULT_ID)
    for value in (uid, gid):
        if value > MAX_ID:
            raise UsageError(f"user id out of range (0 to {MAX_ID}) in {spec!r}")
    return RuntimeUser(uid, gid, name, gname)


def is_number(text: str) -> bool:
    """ASCII digits only: str.isdigit() is true of "²" too, which int() refuses."""
    return text.isascii() and text.isdigit()


def check_name(name: str, spec: str) -> None:
    """Refuse a user or group name that the NSS files cannot hold ("" is no name)."""
    if NAME_BREAKERS.search(name):
        where = f" in {spec!r}" if spec != name else ""
        raise UsageError(
            f"a user or group name cannot hold ':', ',', spaces or control characters: "
            f"{name!r}{where}"
        )


def _name_of(users: dict[str, tuple[int, int]], uid: int) -> str:
    return next((n for n, (u, _g) in sorted(users.items()) if u == uid), "")


def read_passwd(data: bytes) -> dict[str, tuple[int, int]]:
    """name -> (uid, gid) of an /etc/passwd; malformed lines are skipped, as glibc does."""
    out: dict[str, tuple[int, int]] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and is_number(parts[2]) and is_number(parts[3]):
            out.setdefault(parts[0], (int(parts[2]), int(parts[3])))
    return out


def read_group(data: bytes) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        parts = line.split(":")
        if len(parts) >= 3 and is_number(parts[2]):
            out.setdefault(parts[0], int(parts[2]))
    return out


def nss_documents(user: RuntimeUser) -> dict[str, bytes]:
    """The NSS files for `user`: complete lines, each ending in a newline."""
    passwd = [f"{n}:x:{i}:{i}:{n}:/write:" for n, i in BASE_USERS]
    if all(i != user.uid for _n, i in BASE_USERS):
        passwd.append(f"{user.name}:x:{user.uid}:{user.gid}:{user.name}:/write:")
    group = [f"{n}:x:{i}:" for n, i in BASE_GROUPS]
    taken = {i for _n, i in BASE_GROUPS}
    if user.gid not in taken:
        group.append(f"{user.group}:x:{user.gid}:")
        taken.add(user.gid)
    next_gid = max(user.gid, DEFAULT_ID)
    for extra in user.groups:
        if extra in dict(BASE_GROUPS):
            continue
        next_gid += 1
        while next_gid in taken:
            next_gid += 1
        taken.add(next_gid)
        group.append(f"{extra}:x:{next_gid}:{user.name}")
    return {
        "etc/passwd": ("\n".join(passwd) + "\n").encode(),
        "etc/group": ("\n".join(group) + "\n").encode(),
        "etc/nsswitch.conf": NSSWITCH,
    }


def reduce_mode(entry: Entry) -> int:
    """0755 for directories and anything with an executable bit, else 0644."""
    if entry.kind is Kind.SYMLINK:
        return 0o777
    if entry.kind is Kind.DIR or entry.mode & 0o111:
        return 0o755
    return 0o644


def apply_conventions(tree: FileTree, conventions: Conventions) -> FileTree:
    """A new tree: `tree` with the microcontainer conventions applied."""
    user = conventions.user
    out = FileTree()
    for entry in tree:
        top = entry.path.split("/", 1)
        if top[0] in EMPTIED_DIRS and len(top) > 1:
            continue

        if entry.path in RUNTIME_DIRS:
            continue  # re-added below as plain empty directories
        if conventions.nss and entry.path in NSS_FILES:
            continue
        uid, gid = (entry.uid, entry.gid) if conventions.keep_ownership else (user.uid, user.gid)
        mode = entry.mode if conventions.keep_modes else reduce_mode(entry)
        out.add(replace(entry, uid=uid, gid=gid, mode=mode))
    for name in RUNTIME_DIRS:
        out.add_dir(name, 0o755, uid=user.uid, gid=user.gid, origin=ORIGIN)
    if conventions.nss:
        _ensure_dir(out, "etc", user)
        for path, data in nss_documents(user).items():
            out.add_file(path, InlineBytes(data), 0o644, uid=user.uid, gid=user.gid, origin=ORIGIN)
    return out


def _ensure_dir(tree: FileTree, path: str, user: RuntimeUser) -> None:
    entry = tree.get(path)
    if entry is None or entry.kind is not Kind.DIR:
        if entry is not None:
            tree.remove(path)
        tree.add_dir(path, 0o755, uid=user.uid, gid=user.gid, origin=ORIGIN)
