"""scripts/system-packages.sh: what `make test` runs first to install the Debian packages.

It is run for real on a list of our own, with a PATH we control: where nothing can be installed
it must stop with one message (names and the command), and where it can, it must ask apt-get for
exactly what is missing. apt-get itself is a recording stand-in: the real one would change this
machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.support.server import REPO

SCRIPT = REPO / "scripts" / "system-packages.sh"


def tools(directory: Path, *names: str) -> Path:
    """A PATH directory holding only ``names`` (links to the real commands)."""
    directory.mkdir(exist_ok=True)
    for name in names:
        real = shutil.which(name)
        assert real is not None, name
        (directory / name).symlink_to(real)
    return directory


def run(
    path: Path, listing: Path, *sets: str, user: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    return subprocess.run(
        [*(user or []), bash, str(SCRIPT), *sets],
        env={"PATH": str(path), "SYSTEM_PACKAGES_LIST": str(listing)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def listing(tmp_path: Path) -> Path:
    path = tmp_path / "packages.txt"
    path.write_text(
        "# set command package\n"
        "test  dirname                    present-pkg   # present: skipped\n"
        "test  no-such-tool-1|dirname     alt-pkg       # an alternative is present\n"
        "test  no-such-tool-2             missing-one   # missing\n"
        "bench no-such-tool-3             missing-two   # another set\n"
        "test  no-such-tool-4             missing-one   # same package twice: asked once\n"
    )
    return path


def test_nothing_missing_is_silent(tmp_path: Path, listing: Path) -> None:
    path = tools(tmp_path / "bin", "dirname")
    listing.write_text("test dirname present-pkg\n")
    done = run(path, listing, "test")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_without_apt_get_it_stops_naming_what_is_missing(tmp_path: Path, listing: Path) -> None:
    path = tools(tmp_path / "bin", "dirname")
    done = run(path, listing, "test")
    assert done.returncode == 1
    assert "missing missing-one (apt-get is not here" in done.stderr
    assert "sudo apt-get install -y missing-one\n" in done.stderr
    assert "missing-two" not in done.stderr  # not in the set asked for


def test_without_root_or_sudo_it_stops_naming_what_is_missing(listing: Path) -> None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() == 0:
        assert setpriv is not None, "setpriv (util-linux) is needed to drop root"
        user = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        user = []
    # pytest's tmp_path is private to root: the unprivileged run needs a readable directory.
    with tempfile.TemporaryDirectory() as name:
        public = Path(name)
        public.chmod(0o755)
        bin_dir = tools(public / "bin", "dirname")
        (bin_dir / "apt-get").write_text("#!/bin/sh\nexit 99\n")  # there, but root is not
        (bin_dir / "apt-get").chmod(0o755)
        shared = public / "packages.txt"
        shared.write_text(listing.read_text())
        shared.chmod(0o644)
        done = run(bin_dir, shared, "test", "bench", user=user)
    assert done.returncode == 1, done.stderr
    assert "this is not root and sudo asks for a password" in done.stderr
    assert "sudo apt-get install -y missing-one missing-two\n" in done.stderr


def test_as_root_it_asks_apt_get_for_exactly_what_is_missing(tmp_path: Path, listing: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("run as root (CI machines are): the install path is root's")
    bin_dir = tools(tmp_path / "bin", "dirname", "env")
    calls = tmp_path / "calls"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {calls}\n')
    (bin_dir / "apt-get").chmod(0o755)
    done = run(bin_dir, listing, "test", "bench")
    assert done.returncode == 0, done.stderr
    assert calls.read_text().splitlines() == [
        "noninteractive update -qq",
        "noninteractive install -y -qq missing-one missing-two",
    ]


def test_make_test_installs_before_anything_else() -> None:
    """The first thing `make test` does is the install, so a missing package stops it before
    any test (make -n: print, run nothing)."""
    done = subprocess.run(
        ["make", "-n", "--no-print-directory", "test"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert done.stdout.splitlines()[0] == "bash scripts/system-packages.sh test"
