"""Tests mirror the tree: every module of serving/ with logic has a test file of its own at the
mirrored path (serving/x/y.py -> tests/serving/x/test_y.py; __main__.py -> test_main.py), so a
module's contract is tested directly, not only through whatever happens to call it."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "serving"
#: Modules without logic of their own, and why they need no test file.
NO_LOGIC = {
    "serving/api/schemas.py": "msgspec Structs of the response bodies; the routes' tests use them",
}


def mirrored_test(module: Path) -> Path:
    relative = module.relative_to(PACKAGE)
    name = "test_main.py" if module.name == "__main__.py" else f"test_{module.name}"
    return REPO / "tests" / "serving" / relative.parent / name


def test_every_module_with_logic_has_its_own_test_file() -> None:
    modules = [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if path.name != "__init__.py" and "generated" not in path.parts
    ]
    assert len(modules) > 40
    missing = [
        str(path.relative_to(REPO))
        for path in modules
        if str(path.relative_to(REPO)) not in NO_LOGIC and not mirrored_test(path).is_file()
    ]
    assert missing == [], f"modules without tests/serving/.../test_<module>.py: {missing}"


def test_the_exceptions_still_exist_and_still_have_no_test_file() -> None:
    for module in NO_LOGIC:
        assert (REPO / module).is_file(), f"{module} is gone: drop it from NO_LOGIC"
        assert not mirrored_test(REPO / module).is_file(), f"{module} has tests now"
