"""The distribution: it adds one import name (`transcode`), lists every package of the tree, declares exactly the
third-party distributions the code imports, and registers the Brotli/Snappy codecs with zarr-python."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib.metadata import Distribution, distributions, packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DIST = "tessera-transcode"
TREES = {"transcode": "transcode", "conventions": "transcode.conventions", "schemas": "transcode.schemas"}
# modules that are tools for the tests, not on any verb's path: they may import the `test` extra
TEST_TOOLS = {"transcode/testing/interop.py"}
# test extras no test imports: a pytest plug-in configured in pyproject, the server command tools/moto_up.sh
# starts, the build backend the wheel test below builds with (no network in tests, so no build isolation), and the
# package that only declares imagecodecs' zarr.codecs entry points
USED_WITHOUT_IMPORT = {"pytest-timeout", "moto", "setuptools", "imagecodecs-zarr"}
# test extras with a Python-version marker, by import name: where they do not install, the name is theirs anyway
MARKED = {"imagecodecs": "imagecodecs"}


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _installed() -> Distribution:
    """The installed distribution Python imports first (pip writes INSTALLER; the egg-info an editable install
    leaves in the checkout has none)."""
    return next(d for d in distributions(name=DIST) if d.read_text("INSTALLER") is not None)


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> dict[str, set[str]]:
    """Distribution names the installed metadata requires, by extra ("" for the runtime dependencies)."""
    out: dict[str, set[str]] = {}
    for req in _installed().requires or []:
        spec, _, marker = req.partition(";")
        extra = re.search(r'extra\s*==\s*"([^"]+)"', marker)
        name = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec).group(1)
        out.setdefault(extra.group(1) if extra else "", set()).add(_normal(name))
    return out


def _imports(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file, lazy ones inside functions included."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def _third_party(paths: list[Path], local: set[str]) -> dict[str, set[str]]:
    """Distribution -> files importing it, for every import that is neither stdlib nor `local`."""
    owners = packages_distributions()
    out: dict[str, set[str]] = {}
    for path in paths:
        for name in _imports(path) - set(sys.stdlib_module_names) - local - {"__future__"}:
            found = owners.get(name) or ([MARKED[name]] if name in MARKED else [])
            assert found, f"{path.relative_to(ROOT)} imports {name!r}, which no installed distribution has"
            for dist in found:
                out.setdefault(_normal(dist), set()).add(str(path.relative_to(ROOT)))
    return out


def _package_files() -> list[Path]:
    return sorted(p for tree in TREES for p in (ROOT / tree).rglob("*.py") if "__pycache__" not in p.parts)


def test_runtime_imports_are_exactly_the_declared_dependencies():
    runtime = [p for p in _package_files() if str(p.relative_to(ROOT)) not in TEST_TOOLS]
    imported = _third_party(runtime, {"transcode"})
    declared = _declared()[""]
    assert set(imported) - declared == set(), {d: imported[d] for d in set(imported) - declared}
    assert declared - set(imported) == set(), "declared but never imported by the package"


def test_test_tools_and_tests_import_only_declared_distributions():
    declared = _declared()
    local = {"transcode"} | {p.stem for p in (ROOT / "tests").glob("*.py")}
    paths = [ROOT / t for t in TEST_TOOLS] + sorted((ROOT / "tests").glob("*.py"))
    imported = _third_party(paths, local)
    allowed = declared[""] | declared["test"]
    assert set(imported) - allowed == set(), {d: imported[d] for d in set(imported) - allowed}
    assert declared["test"] - set(imported) == USED_WITHOUT_IMPORT


def test_pyproject_lists_every_package_of_the_tree():
    config = _pyproject()["tool"]["setuptools"]
    listed = set(config["packages"])
    dirs = {name: path for path, name in TREES.items()}
    for package, path in config["package-dir"].items():
        assert dirs[package] == path
    found = set()
    for tree, name in TREES.items():
        for init in (ROOT / tree).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / tree)
            found.add(".".join([name, *rel.parts]))
    assert listed == found
    # and every directory holding Python files is a package (nothing left out by a missing __init__.py)
    for path in _package_files():
        assert (path.parent / "__init__.py").exists(), path


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    """The wheel `pip wheel --no-deps` builds from a copy of the source (the checkout itself stays untouched)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.egg-info", "build")
    for tree in TREES:
        shutil.copytree(ROOT / tree, src / tree, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--wheel-dir", str(base / "dist"), str(src)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = (base / "dist").glob("tessera_transcode-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_adds_only_the_transcode_import_name(wheel):
    names = wheel.namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"transcode"}
    info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    assert wheel.read(f"{info}/top_level.txt").decode().split() == ["transcode"]
    for tree, package in TREES.items():  # the trees land under transcode/, their data included
        for path in (ROOT / tree).rglob("*"):
            if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
                inner = "/".join([*package.split("."), *path.relative_to(ROOT / tree).parts])
                assert inner in names, inner


def test_the_wheel_declares_the_codec_entry_points(wheel):
    info = next(n.split("/")[0] for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
    text = wheel.read(f"{info}/entry_points.txt").decode()
    section = text.split("[zarr.codecs]")[1].split("[")[0]
    points = dict(line.replace(" ", "").split("=", 1) for line in section.strip().splitlines())
    assert points == {"imagecodecs_brotli": "transcode.codecs.extracodecs:BrotliCodec",
                      "imagecodecs_snappy": "transcode.codecs.extracodecs:SnappyCodec"}


def test_the_installed_distribution_adds_only_transcode():
    dist = _installed()
    assert dist.read_text("top_level.txt").split() == ["transcode"]
    assert {name for name, owners in packages_distributions().items() if DIST in owners} == {"transcode"}
    top = set()
    for f in dist.files or []:
        first = f.parts[0]
        if first == ".." or first.endswith(".dist-info") or first == "__pycache__":
            continue  # scripts, metadata
        if first.startswith("__editable__"):  # an editable install: the import names its finder maps
            if first.endswith("_finder.py"):
                top |= {name.split(".")[0] for name in _editable_mapping(f.locate())}
            continue
        top.add(first.removesuffix(".py"))
    assert top == {"transcode"}


def _editable_mapping(finder: Path) -> dict:
    """The MAPPING a setuptools editable finder module defines (import name -> source directory)."""
    tree = ast.parse(Path(finder).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.AnnAssign | ast.Assign):
            target = node.target if isinstance(node, ast.AnnAssign) else node.targets[0]
            if isinstance(target, ast.Name) and target.id == "MAPPING":
                return ast.literal_eval(node.value)
    raise AssertionError(f"{finder}: no MAPPING")
