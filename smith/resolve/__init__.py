"""RPM sources: read packages, load yum repositories, resolve with libsolv, lock the result.

The API the rest of smith uses (each module is small enough to read whole):

    fetcher = Fetcher(cache_dir=None, offline=False)                    # fetch.py
    repos = load_repos([RepoConfig(id, baseurl, priority, gpgcheck, gpgkey)], fetcher)
    pkgs = resolve(requests, repos, arch="x86_64", excludes=(), weak=False)  # solver.py
    pkgs = plan_packages(requests, configs, fetcher, arch=..., lock_path=..., locked=...)
    paths = fetch_packages(pkgs, fetcher, repos)       # packages.py: checksum + gpgcheck
    add_rpm_to_tree(tree, path, ContentStore(dir))     # rpm.py, store.py
    read_rpm(path) -> RpmPackage                        # header tags, files, deps
    write_lock(path, Lock(...)) / read_lock(path)       # lock.py
"""
