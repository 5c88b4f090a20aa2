"""Advisories from a repository's updateinfo.xml, as dnf's `updateinfo` reads them.

Each <update> names an advisory (id, type, severity, issued date, references such as CVEs)
and the packages that fix it. The file is optional: a repository without one has versions
only. One that is there but cannot be read is an error naming the repository, never
silently "no advisories" (that would hide a security fix from the CI that gates on it).
"""

from __future__ import annotations

import functools
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from smith.errors import PackageError
from smith.resolve.repo import Repo
from smith.resolve.solver import compare_evr, format_evr


class AdvisoryType(StrEnum):
    """The types dnf knows; anything else a repository writes is OTHER."""

    SECURITY = "security"
    BUGFIX = "bugfix"
    ENHANCEMENT = "enhancement"
    NEWPACKAGE = "newpackage"
    OTHER = "other"


@dataclass(frozen=True)
class Reference:
    type: str  # "cve", "bugzilla", "self", ...
    id: str
    href: str


@dataclass(frozen=True)
class FixedPackage:
    """A package an advisory says fixes it: this version or any newer one."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str

    @property
    def evr(self) -> str:
        return format_evr(self.epoch, self.version, self.release)


@dataclass(frozen=True)
class Advisory:
    id: str
    type: AdvisoryType
    severity: str  # "Critical", "Important", ... or "" when the repository gives none
    issued: str  # as the repository writes it ("2026-01-10 00:00:00")
    title: str
    references: tuple[Reference, ...]
    packages: tuple[FixedPackage, ...]
    repo_id: str

    @property
    def cves(self) -> tuple[str, ...]:
        return tuple(sorted({r.id for r in self.references if r.type.lower() == "cve"}))

    def describe(self) -> str:
        """One line: id, type, severity, issued day, CVEs."""
        words = [self.id, self.type.value, self.severity, self.issued.split(" ")[0], *self.cves]
        return " ".join(w for w in words if w)


def _text(el: ET.Element, tag: str) -> str:
    return (el.findtext(tag) or "").strip()


def _package(el: ET.Element, where: str) -> FixedPackage:
    name, version, release = (el.get(k, "") for k in ("name", "version", "release"))
    if not (name and version and release):
        raise PackageError(f"{where}: a <package> lacks its name, version or release")
    epoch = el.get("epoch") or "0"
    if not epoch.isdigit():
        raise PackageError(
            f"{where}: package {name!r} has an epoch that is not a number: {epoch!r}"
        )
    return FixedPackage(name, int(epoch), version, release, el.get("arch", ""))


def _advisory(el: ET.Element, repo_id: str, where: str) -> Advisory:
    adv_id = _text(el, "id")
    if not adv_id:
        raise PackageError(f"{where}: an <update> has no <id>")
    where = f"{where}: advisory {adv_id}"
    raw_type = el.get("type", "").lower()
    known = {t.value for t in AdvisoryType}
    kind = AdvisoryType(raw_type) if raw_type in known else AdvisoryType.OTHER
    issued = el.find("issued")
    references = tuple(
        Reference(r.get("type", ""), r.get("id", "") or r.get("title", ""), r.get("href", ""))
        for r in el.iterfind("references/reference")
    )
    packages = tuple(_package(p, where) for p in el.iterfind("pkglist/collection/package"))
    return Advisory(
        id=adv_id,
        type=kind,
        severity=_text(el, "severity"),
        issued=issued.get("date", "") if issued is not None else "",
        title=_text(el, "title"),
        references=references,
        packages=packages,
        repo_id=repo_id,
    )


@functools.cache
def read_updateinfo(path: Path, repo_id: str) -> tuple[Advisory, ...]:
    """The advisories of one repository's (decompressed, checksum-verified) updateinfo.xml.

    Cached: recipes that share a repository read its file once per run."""
    where = f"repository {repo_id!r}: updateinfo.xml"
    try:
        root = ET.parse(path).getroot()  # noqa: S314 - no entities expanded by ElementTree
    except ET.ParseError as err:
        raise PackageError(f"{where} is not valid XML: {err}") from None
    if root.tag != "updates":
        raise PackageError(f"{where}: the root element is <{root.tag}>, not <updates>")
    return tuple(_advisory(el, repo_id, where) for el in root.iterfind("update"))


def repo_advisories(repos: Sequence[Repo]) -> tuple[Advisory, ...]:
    return tuple(
        a for r in repos if r.updateinfo for a in read_updateinfo(r.updateinfo, r.config.id)
    )


def advisories_fixed(
    name: str, arch: str, old_evr: str, new_evr: str, advisories: Sequence[Advisory]
) -> tuple[Advisory, ...]:
    """The advisories that apply to `name` at `old_evr` (they name a fix newer than it)
    and that `new_evr` fixes (it is that fix or newer), as dnf decides which advisories an
    upgrade brings. Sorted by id; one advisory listed by two repositories counts once."""
    out: dict[str, Advisory] = {}
    for adv in advisories:
        for fix in adv.packages:
            if fix.name != name or fix.arch not in (arch, ""):
                continue
            if compare_evr(old_evr, fix.evr) < 0 <= compare_evr(new_evr, fix.evr):
                out.setdefault(adv.id, adv)
    return tuple(out[k] for k in sorted(out))
