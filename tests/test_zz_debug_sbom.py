from pathlib import Path
from tests.test_minimize_debian import debian  # noqa: F401
import shutil

def test_dump(debian, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    shutil.copytree(debian.nginx_layout, "/tmp/sbom-work/dbg/nginx", dirs_exist_ok=True)
