"""`smith diff`: why two images are not bit-identical, cause first.

Blobs are paired by role, never by name or digest: index with index, manifest with
manifest, config with config, layer i with layer i. A changed layer is compared entry by
entry and header field by header field; a layer whose uncompressed tar is identical is
reported as a compression difference (gzip header fields, compressor annotations). Digests
that changed only because something they point to changed are consequences, listed last,
so the first line of a report is a cause.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from smith.errors import ImageFormatError
from smith.oci.image import Platform
from smith.oci.loaded import LoadedImage
from smith.oci.reading import open_image
from smith.oci.registry_options import RegistryOptions
from smith.oci.tarstream import Member
from smith.oci.unpack import Applier, check_diff_id
from smith.tarscan import TarEntry, TarSummary, gzip_members, header_field_at, scan_tar
from smith.tree import InlineBytes

MISSING = "(absent)"
# Compared in this order; the first differing field of an entry is its cause.
ENTRY_FIELDS = (
    "type",
    "name form",
    "mode",
    "uid",
    "gid",
    "uname",
    "gname",
    "mtime",
    "PAX records",
    "link target",
    "size",
    "content",
    "devices",
    "tar format",
    "header bytes",
)


@dataclass(frozen=True)
class Finding:
    """One difference: where (role and subject), which field, and both values."""

    role: str  # "layer 1", "config", "manifest", "index", "archive"
    subject: str  # a tar entry's path, a JSON path such as .config.Env, or "compression"
    field: str
    a: str
    b: str
    derived: bool = False  # only a digest of something else that changed

    def sentence(self) -> str:
        if self.field == "added":
            return f"{self.role}: {self.subject} is only in B ({self.b})"
        if self.field == "removed":
            return f"{self.role}: {self.subject} is only in A ({self.a})"
        return f"{self.role}: {self.subject}: {self.field} differs: A {self.a}, B {self.b}"

    def to_json(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "subject": self.subject,
            "field": self.field,
            "a": self.a,
            "b": self.b,
            "derived": self.derived,
        }


@dataclass(frozen=True)
class DiffReport:
    a: str
    b: str
    findings: tuple[Finding, ...]

    @property
    def identical(self) -> bool:
        return not self.findings

    @property
    def causes(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.derived)

    def first_cause(self) -> Finding | None:
        causes = self.causes
        return causes[0] if causes else (self.findings[0] if self.findings else None)

    def render(self, limit: int = 40) -> str:
        first = self.first_cause()
        if first is None:
            return f"identical: {self.a} and {self.b}"
        lines = [f"first cause: {first.sentence()}"]
        rest = [f for f in self.causes if f is not first]
        if rest:
            lines.append(f"then ({len(rest)} more):")
            lines += [f"  {f.sentence()}" for f in rest[:limit]]
            if len(rest) > limit:
                lines.append(f"  ... and {len(rest) - limit} more (--json lists all)")
        derived = [f for f in self.findings if f.derived]
        if derived:
            what = ", ".join(f"{f.role} {f.subject}" for f in derived[:8])
            more = f" and {len(derived) - 8} more" if len(derived) > 8 else ""
            lines.append(f"consequences (digests of the above): {what}{more}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        first = self.first_cause()
        return {
            "a": self.a,
            "b": self.b,
            "identical": self.identical,
            "first_cause": first.to_json() if first else None,
            "first_cause_text": first.sentence() if first else "",
            "findings": [f.to_json() for f in self.findings],
        }


# -- entry point ---------------------------------------------------------------------------


def diff_images(
    a: str, b: str, registry: RegistryOptions | None = None, platform: Platform | None = None
) -> DiffReport:
    """Compare two images of any form smith reads (registry references with `registry`'s
    options); of multi-platform indexes, the images for `platform` (default: the host's)."""
    with ExitStack() as stack:
        image_a = stack.enter_context(open_image(a, platform=platform, registry=registry))
        image_b = stack.enter_context(open_image(b, platform=platform, registry=registry))
        findings = diff_loaded(image_a, image_b, image_a.top, image_b.top)
        if not findings and os.path.isfile(a) and os.path.isfile(b):
            findings = diff_archive_files(a, b)
    return DiffReport(a, b, tuple(sorted_findings(findings)))


def sorted_findings(findings: list[Finding]) -> list[Finding]:
    # Causes before consequences; otherwise the order of discovery, which goes from the
    # layers (deepest) up to the index.
    return [f for f in findings if not f.derived] + [f for f in findings if f.derived]


class LayerWalk:
    """The layers of one image read in order and applied as minimize applies them (metadata
    only), so that a layer minimize refuses is the same one-line error here, not a
    difference; the layers that differ are scanned for their entries in the same pass."""

    def __init__(self, image: LoadedImage) -> None:
        self.layers = image.layers
        self.applier = Applier(None)

    def scan(
        self, index: int, entries: bool, also: LayerWalk | None = None
    ) -> tuple[list[TarEntry], TarSummary]:
        """Apply layer `index` (every layer, in order); its entries when `entries`. `also`:
        the other image's walk, whose layer `index` is the same blob: one read for both."""
        layer = self.layers[index]
        name = layer.name
        appliers = [self.applier, *([also.applier] if also is not None else [])]
        for applier in appliers:
            applier.begin_layer(index)

        def check(member: Member) -> None:
            for applier in appliers:
                applier.apply_member(member, name, no_content)

        summary = TarSummary()
        # The blob's digest is checked in the same pass (the descriptor's size already was).
        found = list(
            scan_tar(
                layer.unchecked_path, summary, layer=name, check=check, entries=entries,
                expect=layer.expect(),
            )
        )  # fmt: skip
        layer.check.done = True
        check_diff_id(summary.sha256, name, layer.diff_id)
        return found, summary


def no_content(_member: Member, _path: str) -> InlineBytes:
    return InlineBytes(b"")


def diff_loaded(
    a: LoadedImage, b: LoadedImage, top_a: bytes | None, top_b: bytes | None
) -> list[Finding]:
    findings: list[Finding] = []
    changed_content: set[int] = set()  # layers whose uncompressed tar differs
    changed_blob: set[int] = set()  # layers whose blob differs at all
    walk_a, walk_b = LayerWalk(a), LayerWalk(b)
    if len(a.layers) != len(b.layers):
        # Said first: layers pair by position, so a file that moved to another layer (a
        # minimized image is one layer) reads as only in A there and only in B here.
        findings.append(
            Finding(
                "manifest",
                "layers",
                "number of layers",
                str(len(a.layers)),
                f"{len(b.layers)} (layer i of A is compared with layer i of B)",
            )
        )
    for i in range(max(len(a.layers), len(b.layers))):
        role = f"layer {i + 1}"
        if i >= len(a.layers) or i >= len(b.layers):
            has = "B" if i >= len(a.layers) else "A"
            desc = (b if has == "B" else a).layers[i]
            findings.append(
                Finding(
                    role,
                    "layer",
                    "added" if has == "B" else "removed",
                    desc.digest if has == "A" else MISSING,
                    desc.digest if has == "B" else MISSING,
                )
            )
            changed_blob.add(i)
            changed_content.add(i)
            (walk_b if has == "B" else walk_a).scan(i, False)  # refused as minimize would
            continue
        da, db = a.layers[i], b.layers[i]
        same = da.digest == db.digest
        if same:
            walk_a.scan(i, False, also=walk_b)
            continue
        scanned_a, scanned_b = walk_a.scan(i, True), walk_b.scan(i, True)
        changed_blob.add(i)
        layer_findings, same_tar = diff_scanned(role, scanned_a, scanned_b)
        if same_tar:
            findings += diff_compression(role, a, b, i)
        else:
            changed_content.add(i)
            findings += layer_findings
        findings.append(Finding(role, "blob digest", "digest", da.digest, db.digest, True))

    config_a, config_b = a.config_bytes, b.config_bytes
    findings += diff_json_blobs(
        "config",
        config_a,
        config_b,
        derived=lambda path: any(path == f".rootfs.diff_ids[{i}]" for i in changed_content),
    )
    config_changed = config_a != config_b

    def manifest_derived(path: str) -> bool:
        if path in (".config.digest", ".config.size"):
            return config_changed
        return any(path in (f".layers[{i}].digest", f".layers[{i}].size") for i in changed_blob)

    manifest_a, manifest_b = a.manifest_bytes, b.manifest_bytes
    findings += diff_json_blobs("manifest", manifest_a, manifest_b, manifest_derived)
    manifest_changed = manifest_a != manifest_b
    if top_a is not None and top_b is not None:
        findings += diff_json_blobs(
            "index",
            top_a,
            top_b,
            lambda path: (
                manifest_changed
                and (
                    path.endswith(".digest") or path.endswith(".size") or path.endswith("].Config")
                )
            ),
        )
    return findings


# -- layers --------------------------------------------------------------------------------


def diff_layer(role: str, path_a: str, path_b: str) -> tuple[list[Finding], bool]:
    """Findings for two tar blobs, and whether their uncompressed tars are identical."""
    sum_a, sum_b = TarSummary(), TarSummary()
    entries_a = list(scan_tar(path_a, sum_a))
    entries_b = list(scan_tar(path_b, sum_b))
    return diff_scanned(role, (entries_a, sum_a), (entries_b, sum_b))


def diff_scanned(
    role: str, a: tuple[list[TarEntry], TarSummary], b: tuple[list[TarEntry], TarSummary]
) -> tuple[list[Finding], bool]:
    (entries_a, sum_a), (entries_b, sum_b) = a, b
    if sum_a.sha256 == sum_b.sha256:
        return [], True
    findings = diff_entries(role, entries_a, entries_b)
    if sum_a.globals != sum_b.globals:
        findings.append(
            Finding(role, "global PAX header", "PAX records", fmt_records(sum_a.globals),
                    fmt_records(sum_b.globals))
        )  # fmt: skip
    if sum_a.end_blocks != sum_b.end_blocks:
        findings.append(
            Finding(
                role,
                "end of archive",
                "zero blocks after the last entry",
                str(sum_a.end_blocks),
                str(sum_b.end_blocks),
            )
        )
    if not findings:
        findings.append(Finding(role, "tar stream", "bytes", sum_a.sha256, sum_b.sha256))
    return findings, False


def diff_entries(role: str, a: Sequence[TarEntry], b: Sequence[TarEntry]) -> list[Finding]:
    findings: list[Finding] = []
    index_a = keyed(a)
    index_b = keyed(b)
    order_a = [k for k in index_a if k in index_b]
    order_b = [k for k in index_b if k in index_a]
    if order_a != order_b:
        pos = next(i for i, (x, y) in enumerate(zip(order_a, order_b, strict=True)) if x != y)
        moved = order_a[pos]
        findings.append(
            Finding(
                role,
                moved[0],
                "order",
                f"entry {index_a[moved].position}",
                f"entry {index_b[moved].position} (B has {order_b[pos][0]!r} where A has it)",
            )
        )
    # Entries in the order of A, then what only B has, in B's order.
    for key, entry in index_a.items():
        other = index_b.get(key)
        if other is None:
            findings.append(Finding(role, key[0], "removed", describe_entry(entry), MISSING))
        else:
            findings += diff_entry(role, key[0], entry, other)
    for key, entry in index_b.items():
        if key not in index_a:
            findings.append(Finding(role, key[0], "added", MISSING, describe_entry(entry)))
    return findings


def keyed(entries: Sequence[TarEntry]) -> dict[tuple[str, int], TarEntry]:
    """Entries by (path, occurrence): a tar may name one path twice (the last one wins
    when unpacked), and both occurrences are compared."""
    seen: dict[str, int] = {}
    out: dict[tuple[str, int], TarEntry] = {}
    for entry in entries:
        n = seen.get(entry.key, 0)
        seen[entry.key] = n + 1
        out[(entry.key, n)] = entry
    return out


def describe_entry(entry: TarEntry) -> str:
    return f"{entry.type}, mode {show_mode(entry.mode)}, {entry.size} bytes"


def show_mode(mode: int) -> str:
    """Permission bits as chmod writes them; the file type bits that Go's archive/tar (so
    docker save, containerd, buildah) also puts in the header's mode field are named apart,
    so that `A 40755, B 0755` does not read as a change of permissions."""
    perm, kind = mode & 0o7777, mode & ~0o7777
    return f"{perm:04o} with the file type bits {kind:06o}" if kind else f"{perm:04o}"


def fmt_records(records: Sequence[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{k}={v}" for k, v in records) + "}" if records else "(none)"


def entry_values(e: TarEntry) -> dict[str, str]:
    return {
        "name form": f"{e.name!r} ({e.name_form})",
        "type": e.type,
        "mode": show_mode(e.mode),
        "uid": str(e.uid),
        "gid": str(e.gid),
        "uname": repr(e.uname),
        "gname": repr(e.gname),
        "mtime": e.mtime + (" (PAX record)" if any(k == "mtime" for k, _ in e.pax) else ""),
        "PAX records": fmt_records(e.pax),
        "link target": repr(e.linkname),
        "size": str(e.size),
        "content": "sha256:" + e.content if e.content else "(none)",
        "devices": f"{e.devices[0]},{e.devices[1]}",
        "tar format": repr(e.magic),
    }


def diff_entry(role: str, path: str, a: TarEntry, b: TarEntry) -> list[Finding]:
    values_a, values_b = entry_values(a), entry_values(b)
    if a.type != b.type:
        # A directory's trailing slash follows from its type; it is not a second cause.
        values_a["name form"] = values_b["name form"] = ""
    findings = [
        Finding(role, path, name, values_a[name], values_b[name])
        for name in ENTRY_FIELDS
        if name in values_a and values_a[name] != values_b[name]
    ]
    if not findings and a.header != b.header:
        offset = next(i for i in range(512) if a.header[i] != b.header[i])
        where = header_field_at(offset)
        if where != "checksum":  # a checksum differs only because another byte does
            findings.append(
                Finding(
                    role,
                    path,
                    "header bytes",
                    f"{where} field: {a.header[offset : offset + 12]!r}",
                    f"{where} field: {b.header[offset : offset + 12]!r}",
                )
            )
    return findings


def diff_compression(role: str, a: LoadedImage, b: LoadedImage, i: int) -> list[Finding]:
    """The same tar compressed differently: say how."""
    da, db = a.layers[i], b.layers[i]
    path_a, path_b = da.verified_path(), db.verified_path()  # read as stored
    kind_a, kind_b = da.compression(), db.compression()
    subject = "compression (same uncompressed tar)"
    if kind_a != kind_b:
        return [Finding(role, subject, "compression", kind_a, kind_b)]
    findings: list[Finding] = []
    if da.media_type != db.media_type:
        findings.append(Finding(role, subject, "media type", da.media_type, db.media_type))
    ann_a, ann_b = dict(da.descriptor.annotations), dict(db.descriptor.annotations)
    for key in sorted(set(ann_a) | set(ann_b)):
        if key.startswith("org.smith.compressor") and ann_a.get(key) != ann_b.get(key):
            findings.append(
                Finding(role, subject, key, ann_a.get(key, MISSING), ann_b.get(key, MISSING))
            )
    if kind_a == "gzip":
        members_a, members_b = gzip_members(path_a), gzip_members(path_b)
        for n, (ma, mb) in enumerate(zip(members_a, members_b, strict=False)):
            fa, fb = ma.fields(), mb.fields()
            differing = [k for k in fa if fa[k] != fb[k]]
            for key in differing:
                where = "gzip header" if n == 0 else f"gzip member {n + 1} header"
                findings.append(Finding(role, subject, f"{where} {key}", fa[key], fb[key]))
            if differing:
                break  # the first member that differs says it; the rest repeat it
        if len(members_a) != len(members_b):
            findings.append(
                Finding(role, subject, "gzip members", str(len(members_a)), str(len(members_b)))
            )
    if not findings:
        findings.append(
            Finding(
                role,
                subject,
                f"{kind_a} stream",
                f"{da.size} bytes (another compressor, version or level?)",
                f"{db.size} bytes",
            )
        )
    return findings


def diff_archive_files(a: str, b: str) -> list[Finding]:
    """Same blobs, different archive files: compare the archives' own tar entries."""
    if file_sha256(a) == file_sha256(b):
        return []
    findings, same = diff_layer("archive", a, b)
    if same:
        return [Finding("archive", "compression", "bytes", file_sha256(a), file_sha256(b))]
    return findings


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()


# -- JSON documents ------------------------------------------------------------------------


def diff_json_blobs(role: str, a: bytes, b: bytes, derived: Any) -> list[Finding]:
    if a == b:
        return []
    try:
        doc_a, doc_b = json.loads(a), json.loads(b)
    except ValueError:
        return [Finding(role, "document", "bytes", "not JSON", "not JSON")]
    findings = [
        Finding(role, path, "value", va, vb, bool(derived(path)))
        for path, va, vb in json_differences(doc_a, doc_b, "")
    ]
    if not findings:
        findings.append(serialization_finding(role, a, b, doc_a))
    return findings


def show(value: Any) -> str:
    if value is MISSING:
        return str(MISSING)
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 200 else text[:197] + "..."


def json_differences(a: Any, b: Any, path: str) -> Iterator[tuple[str, str, str]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            yield from json_differences(
                a.get(key, MISSING), b.get(key, MISSING), path + json_key(key)
            )
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from json_differences(x, y, f"{path}[{i}]")
    elif isinstance(a, str) and isinstance(b, str) and a != b and embedded_json(a, b):
        # Annotations hold JSON in strings (smith's package-files list): look inside.
        for sub, va, vb in json_differences(json.loads(a), json.loads(b), ""):
            yield f"{path}{sub or ''} (JSON inside)", va, vb
    elif a != b or type(a) is not type(b):
        yield path or ".", show(a), show(b)


def json_key(key: str) -> str:
    """.key, or ["key"] when the key has dots or other characters a path would blur."""
    return f".{key}" if key.isidentifier() else f"[{json.dumps(key)}]"


def embedded_json(a: str, b: str) -> bool:
    if not (a[:1] in "{[" and b[:1] in "{["):
        return False
    try:
        json.loads(a), json.loads(b)
    except ValueError:
        return False
    return True


def serialization_finding(role: str, a: bytes, b: bytes, doc: Any) -> Finding:
    """Same JSON values, different bytes: name what about the serialization differs."""
    order_a, order_b = (
        key_order(json.loads(a, object_pairs_hook=list)),
        key_order(json.loads(b, object_pairs_hook=list)),
    )
    if order_a != order_b:
        for (where, keys_a), (_, keys_b) in zip(order_a, order_b, strict=False):
            if keys_a != keys_b:
                return Finding(
                    role, where or "top level", "key order", ",".join(keys_a), ",".join(keys_b)
                )
    if a.rstrip(b"\n") == b.rstrip(b"\n"):
        return Finding(role, "document", "trailing newline", repr(a[-1:]), repr(b[-1:]))
    offset = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    return Finding(
        role,
        "document",
        "serialization (whitespace or escaping)",
        repr(a[max(0, offset - 10) : offset + 20]),
        repr(b[max(0, offset - 10) : offset + 20]),
    )


def key_order(pairs: Any, path: str = "") -> list[tuple[str, list[str]]]:
    """(path, keys in written order) for every object of a document parsed into pairs."""
    out: list[tuple[str, list[str]]] = []
    if isinstance(pairs, list) and all(isinstance(p, tuple) and len(p) == 2 for p in pairs):
        if pairs or path == "":
            out.append((path, [k for k, _ in pairs]))
        for k, v in pairs:
            out += key_order(v, path + json_key(k))
    elif isinstance(pairs, list):
        for i, v in enumerate(pairs):
            out += key_order(v, f"{path}[{i}]")
    return out


@dataclass(frozen=True)
class Digests:
    """The digests verify compares: what a golden file records."""

    index: str
    manifest: str
    config: str
    layers: tuple[str, ...]
    diff_ids: tuple[str, ...]
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "manifest": self.manifest,
            "config": self.config,
            "layers": list(self.layers),
            "diff_ids": list(self.diff_ids),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], what: str) -> Digests:
        try:
            return cls(
                str(doc.get("index", "")),
                str(doc["manifest"]),
                str(doc["config"]),
                tuple(str(d) for d in doc["layers"]),
                tuple(str(d) for d in doc["diff_ids"]),
            )
        except (KeyError, TypeError) as err:
            raise ImageFormatError(f"{what}: not a digest record (missing {err})") from None

    def differences(self, other: Digests) -> list[str]:
        names = ("index", "manifest", "config", "layers", "diff_ids")
        mine, theirs = self.to_json(), other.to_json()
        return [n for n in names if mine[n] != theirs[n] and not (n == "index" and not theirs[n])]


def image_digests(source: str) -> Digests:
    with open_image(source) as image:
        top = image.top
        return Digests(
            index="sha256:" + hashlib.sha256(top).hexdigest() if top else "",
            manifest=image.manifest_descriptor.digest,
            config=image.config_descriptor.digest,
            layers=tuple(d.digest for d in image.layers),
            diff_ids=tuple(image.diff_ids),
        )
