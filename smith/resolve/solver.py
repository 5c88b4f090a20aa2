"""Dependency resolution with libsolv: which packages make a request installable.

The target root starts empty (no installed system), so the answer is the whole closure.
Requests are package names, provides (`libz.so.1()(64bit)`, `webserver`) or file paths.
Only the target architecture and noarch are considered (libsolv's own x86_64 policy would
also take i686 packages), excludes are removed from consideration before solving, and weak
dependencies (Recommends/Supplements) are ignored unless asked for.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import solv

from smith.errors import PackageError, ResolveError
from smith.resolve.fetch import Checksum, contained_url, is_remote, join_url
from smith.resolve.repo import Repo

DEFAULT_ARCH = "x86_64"


@dataclass(frozen=True)
class ResolvedPackage:
    """One package of a resolution: what to fetch, from where, and how to check it."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str
    repo_id: str
    url: str
    checksum: Checksum
    size: int

    @property
    def evr(self) -> str:
        return format_evr(self.epoch, self.version, self.release)

    @property
    def nevra(self) -> str:
        return f"{self.name}-{self.evr}.{self.arch}"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.release}.{self.arch}.rpm"


def format_evr(epoch: int, version: str, release: str) -> str:
    """[epoch:]version-release, an epoch of 0 left out (as rpm and libsolv print it)."""
    return f"{epoch}:{version}-{release}" if epoch else f"{version}-{release}"


def _open_xml(path: os.PathLike[str] | str) -> Any:
    # libsolv reads plain XML from a descriptor; xfopen on a compressed name returns None
    # for xz/zstd and passing that None on segfaults, so the repo layer decompresses first.
    fd = os.open(path, os.O_RDONLY)
    f = solv.xfopen_fd("", fd)
    os.close(fd)  # xfopen_fd dup()s the descriptor
    return f


def _build_pool(repos: Sequence[Repo], arch: str) -> solv.Pool:
    pool = solv.Pool()
    pool.setarch(arch)
    for repo in repos:
        srepo = pool.add_repo(repo.config.id)
        srepo.appdata = repo
        # libsolv prefers higher priorities; dnf/yum prefer lower numbers.
        srepo.priority = -repo.config.priority
        f = _open_xml(repo.primary)
        if not srepo.add_rpmmd(f, None, 0):
            raise PackageError(f"repository {repo.config.shown}: libsolv cannot read primary")
        f.close()
        if repo.filelists is not None:
            f = _open_xml(repo.filelists)
            srepo.add_rpmmd(f, "FL", solv.Repo.REPO_EXTEND_SOLVABLES)
            f.close()
    pool.installed = pool.add_repo("@empty-root")
    pool.addfileprovides()
    pool.createwhatprovides()
    return pool


def _considered(pool: solv.Pool, arch: str, excludes: Iterable[str]) -> None:
    excluded = set(excludes)
    ok = {arch, "noarch"}
    pool.set_considered_list(
        [
            s.id
            for s in pool.solvables_iter()
            if s.arch in ok and s.name not in excluded and not _matches_glob(s.name, excluded)
        ]
    )


def _matches_glob(name: str, patterns: set[str]) -> bool:
    import fnmatch

    return any(("*" in p or "?" in p) and fnmatch.fnmatchcase(name, p) for p in patterns)


SELECTION_FLAGS = (
    solv.Selection.SELECTION_NAME
    | solv.Selection.SELECTION_PROVIDES
    | solv.Selection.SELECTION_FILELIST
    | solv.Selection.SELECTION_CANON
    | solv.Selection.SELECTION_DOTARCH
    | solv.Selection.SELECTION_REL
)


def resolve(
    requests: Sequence[str],
    repos: Sequence[Repo],
    *,
    arch: str = DEFAULT_ARCH,
    excludes: Iterable[str] = (),
    weak: bool = False,
) -> tuple[ResolvedPackage, ...]:
    """The packages (sorted by name, arch) that install `requests` into an empty root."""
    pool = _prepared_pool(requests, repos, arch, excludes)
    return _solve(pool, _request_jobs(pool, requests, repos, arch), requests, weak)


def resolve_update(
    requests: Sequence[str],
    repos: Sequence[Repo],
    pinned: Sequence[ResolvedPackage],
    update: Collection[str],
    *,
    arch: str = DEFAULT_ARCH,
    excludes: Iterable[str] = (),
    weak: bool = False,
) -> UpdateResolution:
    """Resolve `requests` again, moving only the packages named in `update` (and what
    they now require): every other package of `pinned` that the repositories still offer
    is favored, so libsolv keeps it wherever it can, as it keeps an installed package."""
    pool = _prepared_pool(requests, repos, arch, excludes)
    jobs = _request_jobs(pool, requests, repos, arch)
    unoffered = []
    for pkg in pinned:
        if pkg.name in update:
            continue
        same = _offered(pool, pkg)
        if same is None:
            unoffered.append(pkg)
        else:
            jobs.append(pool.Job(solv.Job.SOLVER_SOLVABLE | solv.Job.SOLVER_FAVOR, same.id))
    return UpdateResolution(_solve(pool, jobs, requests, weak), tuple(unoffered))


@dataclass(frozen=True)
class UpdateResolution:
    packages: tuple[ResolvedPackage, ...]
    # Pins to keep that no repository offers any more (an updates repository keeps only
    # the newest version): libsolv cannot keep what it cannot see, so these move too.
    unoffered: tuple[ResolvedPackage, ...]


def newest_versions(
    packages: Iterable[tuple[str, str]],
    repos: Sequence[Repo],
    *,
    arch: str = DEFAULT_ARCH,
    excludes: Iterable[str] = (),
) -> dict[tuple[str, str], ResolvedPackage]:
    """For each package (name, arch), the best one the repositories offer under the
    rules a resolution follows: excludes and the target arch first, then the preferred
    repository priority, then the newest version. Packages offered nowhere are left out."""
    pool = _build_pool(repos, arch)
    _considered(pool, arch, excludes)
    considered = set(pool.get_considered_list())
    out: dict[tuple[str, str], ResolvedPackage] = {}
    for name, pkg_arch in packages:
        sel = pool.select(name, solv.Selection.SELECTION_NAME)
        candidates = [s for s in sel.solvables() if s.arch == pkg_arch and s.id in considered]
        if candidates:
            best = max(pool.best_solvables(candidates), key=functools.cmp_to_key(_evrcmp))
            out[(name, pkg_arch)] = _resolved(best)
    return out


def compare_evr(a: str, b: str) -> int:
    """rpm's order of two [epoch:]version-release strings (<0, 0, >0), as libsolv has it
    (tildes, carets, letters against digits): never a hand-written copy of rpmvercmp."""
    return _evrcmp(_evr_solvable(a), _evr_solvable(b))


def _evrcmp(a: solv.XSolvable, b: solv.XSolvable) -> int:
    return int(a.evrcmp(b))


@functools.cache
def _evr_repo() -> tuple[solv.Pool, Any]:
    # The pool is kept with its repository: freeing it would leave the repository dangling.
    pool = solv.Pool()
    pool.setdisttype(solv.Pool.DISTTYPE_RPM)
    return pool, pool.add_repo("@evr")


@functools.cache
def _evr_solvable(evr: str) -> solv.XSolvable:
    s = _evr_repo()[1].add_solvable()
    s.name, s.evr, s.arch = "evr", evr, "noarch"
    return s


def _offered(pool: solv.Pool, pkg: ResolvedPackage) -> solv.XSolvable | None:
    """The solvable of exactly this locked package: from the repository it came from if
    that still has it, else from any other that does."""
    same = [
        s
        for s in pool.select(pkg.name, solv.Selection.SELECTION_NAME).solvables()
        # libsolv writes an epoch of 0 as no epoch, as ResolvedPackage.evr does.
        if s.arch == pkg.arch and s.evr == pkg.evr
    ]
    return min(same, key=lambda s: (s.repo.name != pkg.repo_id, s.repo.name), default=None)


def _prepared_pool(
    requests: Sequence[str], repos: Sequence[Repo], arch: str, excludes: Iterable[str]
) -> solv.Pool:
    if not requests:
        raise ResolveError("nothing to resolve: no packages requested")
    pool = _build_pool(repos, arch)
    _considered(pool, arch, excludes)
    return pool


def _request_jobs(
    pool: solv.Pool, requests: Sequence[str], repos: Sequence[Repo], arch: str
) -> list[Any]:
    jobs = []
    for req in requests:
        sel = pool.select(req, SELECTION_FLAGS)
        if sel.isempty():
            raise ResolveError(
                f"no package provides {req!r} for {arch} in {_repo_names(repos)}"
                + _other_arches(pool, req, arch)
            )
        jobs += sel.jobs(solv.Job.SOLVER_INSTALL)
    return jobs


def _solve(
    pool: solv.Pool, jobs: list[Any], requests: Sequence[str], weak: bool
) -> tuple[ResolvedPackage, ...]:
    solver = pool.Solver()
    solver.set_flag(solv.Solver.SOLVER_FLAG_IGNORE_RECOMMENDED, 0 if weak else 1)
    problems = solver.solve(jobs)
    if problems:
        described = []
        for p in problems:
            hints = [e.str() for sol in p.solutions() for e in sol.elements(True)]
            described.append(f"{p}" + (f" (solutions: {'; '.join(hints)})" if hints else ""))
        raise ResolveError(f"cannot install {', '.join(requests)}: " + " | ".join(described))
    trans = solver.transaction()
    out = [_resolved(s) for s in trans.newsolvables()]
    return tuple(sorted(out, key=lambda p: (p.name, p.arch, p.evr)))


def _repo_names(repos: Sequence[Repo]) -> str:
    # A repository the recipe gave no name is named by its URL, as the user wrote it.
    return ", ".join(r.config.shown for r in repos) or "no repositories"


def _other_arches(pool: solv.Pool, req: str, arch: str) -> str:
    """Where a request failed only for its architecture, say which ones the repositories
    have (an `arch: aarch64` recipe against an x86_64 repository)."""
    name = req.split()[0]
    arches = sorted({s.arch for s in pool.solvables_iter() if s.name == name} - {arch})
    if not arches:
        return ""
    return f" (it is there for {', '.join(arches)}: set `arch:` to one of them)"


def _package_url(s: solv.XSolvable, repo: Repo, location: str) -> str:
    # primary.xml may give a package its own base (<location xml:base=...>), e.g. a
    # metadata-only mirror pointing at the real package server.
    # A package must stay under its base: hrefs with `..`, another host or file: would
    # make a remote repository read the builder's own files. A remote xml:base is a
    # base of its own (a metadata-only mirror); a local one must stay in the repository.
    base = s.lookup_str(solv.SOLVABLE_MEDIABASE)
    what = f"repository {repo.config.shown}"
    if base and is_remote(base):
        return contained_url(base, location, what)
    href = join_url(base, location) if base else location
    return contained_url(repo.config.baseurl, href, what)


def _resolved(s: solv.XSolvable) -> ResolvedPackage:
    repo: Repo = s.repo.appdata
    location, _ = s.lookup_location()
    chk = s.lookup_checksum(solv.SOLVABLE_CHECKSUM)
    if chk is None:
        raise ResolveError(f"{s} in repository {repo.config.shown} has no checksum")
    evr = s.evr
    epoch = 0
    if ":" in evr:
        e, evr = evr.split(":", 1)
        epoch = int(e)
    version, _, release = evr.rpartition("-")
    return ResolvedPackage(
        name=s.name,
        epoch=epoch,
        version=version,
        release=release,
        arch=s.arch,
        repo_id=repo.config.id,
        url=_package_url(s, repo, location),
        checksum=Checksum.parse(chk.typestr(), chk.hex(), where=repo.config.id),
        size=s.lookup_num(solv.SOLVABLE_DOWNLOADSIZE),
    )
