"""RPM sources: read packages, load yum repositories, resolve with libsolv, lock the result.

The API other parts of smith use:

    fetcher = Fetcher(cache_dir=None, offline=False)             # fetch.py
    repos = load_repos([RepoConfig(id, baseurl, ...)], fetcher)  # repo.py
    pkgs = resolve(requests, repos, arch=..., excludes=..., weak=False)  # solver.py
    path = fetch_package(pkg, fetcher, repos)                    # packages.py
    add_rpm_to_tree(tree, path, ContentStore(dir))               # rpm.py, store.py
    write_lock(path, Lock(...)) / read_lock(path)                # lock.py
"""
