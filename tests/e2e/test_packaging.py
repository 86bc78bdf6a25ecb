"""Each function, packaged exactly as s.yaml describes, imports its handler in isolation.

For every fc3 resource of s.yaml the code path and runtime are read from s.yaml itself (through
``alibaba_localcloud.syaml``); the package is built with ``chatapp_mass.deploy.packaging`` — the same
builder the resources' pre-deploy actions run — for that runtime (python3.12, manylinux2014_x86_64).

The import is proven on a second package from the same builder and the same sources, built for the
interpreter running the tests (Python 3.11 on this machine): compiled wheels such as pydantic_core's only
load into the Python they were built for, so a 3.12 package cannot be imported by 3.11. That interpreter
runs isolated — ``-I -S`` (no environment variables, no user or virtualenv site-packages), an empty
environment, and only the package directory put on ``sys.path`` — exactly what the FC runtime gives a
handler besides the standard library. It asserts ``callable(index.handler)``, that every module it loaded
came from the package or the standard library, and that the loopback emulators (``alibaba_localcloud``, left out
of packages) were never needed.

Builds need PyPI (pip) the first time; dependencies are cached (``~/.cache/chatapp-mass/build``, or
``$CHATAPP_BUILD_CACHE``), so a warm run only links files: the module's builds share one fixture.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alibaba_localcloud.syaml import FunctionSpec, functions, load
from chatapp_mass.deploy import packaging

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "1234567890123456"


@dataclass(frozen=True)
class Built:
    spec: FunctionSpec
    cloud: Path  # for the runtime s.yaml names
    local: Path  # for the interpreter running this test


def specs() -> list[FunctionSpec]:
    return functions(load(ROOT / "s.yaml", {}, ACCOUNT), ROOT)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    out = tmp_path_factory.mktemp("packages")
    packages: dict[str, Built] = {}
    for spec in specs():
        relative = spec.code.relative_to(ROOT)
        cloud = packaging.build(spec.resource, out / "cloud" / relative, runtime=spec.runtime)
        local = packaging.build(
            spec.resource,
            out / "local" / relative,
            runtime=packaging.running_runtime(),
            platform=packaging.running_platform(),
        )
        packages[spec.resource] = Built(spec, cloud, local)
    return packages


def test_every_function_in_s_yaml_is_packaged_from_its_own_directory(built: dict[str, Built]) -> None:
    assert sorted(built) == ["api", "ingest", "sender"]
    for key, package in built.items():
        # s.yaml's code path is what the builder writes (build/<key>), from functions/<key>/.
        assert package.spec.code == ROOT / "build" / key
        module, _, function = package.spec.handler.rpartition(".")
        entry = package.cloud / f"{module}.py"
        assert entry.read_text() == (ROOT / "functions" / key / f"{module}.py").read_text()
        assert re.search(rf"^def {function}\(", entry.read_text(), re.MULTILINE)


def test_cloud_package_holds_the_shared_package_and_dependencies_for_its_runtime(
    built: dict[str, Built],
) -> None:
    for package in built.values():
        root = package.cloud
        assert package.spec.runtime == "python3.12"
        shared = root / "chatapp_mass"
        assert (shared / "__init__.py").is_file() and (shared / "entry" / "handlers.py").is_file()
        assert not (shared / "deploy").exists() and not (root / "alibaba_localcloud").exists()
        assert (
            not (shared / "entry" / "localcloud.py").exists()
            and not (shared / "entry" / "invoke.py").exists()
        )
        assert not list(root.rglob("__pycache__"))
        # Every pinned requirement is installed at its pinned version.
        installed = {p.name.lower().replace("_", "-") for p in root.glob("*.dist-info")}
        for line in (ROOT / "requirements.txt").read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                name, version = line.split("==")
                assert f"{name.lower().replace('_', '-')}-{version}.dist-info" in installed, line
        # Compiled modules for Linux are for CPython 3.12, none for the machine that built them. (Wheels
        # may ship others they never load there, e.g. tablestore's optional extension for macOS.)
        extensions = [p.name for p in root.rglob("*.so")]
        assert any(name.startswith("_pydantic_core.cpython-312-x86_64-linux-gnu") for name in extensions)
        foreign = [n for n in extensions if re.search(r"\.cpython-(?!312-)\d+-x86_64-linux-gnu", n)]
        assert foreign == []


ISOLATED_IMPORT = r"""
import json, sys, sysconfig
package = sys.argv[1]
sys.path.insert(0, package)
import index
stdlib = {sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")}
outside = sorted(
    name for name, module in list(sys.modules.items())
    if getattr(module, "__file__", None)
    and not module.__file__.startswith(package)
    and not any(module.__file__.startswith(p) for p in stdlib)
)
print(json.dumps({
    "callable": callable(getattr(index, "handler", None)),
    "index": index.__file__,
    "outside": outside,
    "localcloud": sorted(n for n in sys.modules if n.startswith("alibaba_localcloud")),
    "path": sys.path,
}))
"""


def import_in_isolation(package: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-B", "-c", ISOLATED_IMPORT, str(package)],
        capture_output=True,
        text=True,
        env={},
        cwd=package,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("key", ["ingest", "sender", "api"])
def test_handler_imports_in_a_clean_interpreter_with_only_the_package(
    built: dict[str, Built], key: str
) -> None:
    package = built[key].local
    seen = import_in_isolation(package)
    assert seen["callable"] is True
    assert seen["index"] == str(package / "index.py")
    assert seen["outside"] == []  # nothing from the virtualenv or the source tree
    assert seen["localcloud"] == []
    assert not any("site-packages" in p for p in seen["path"])


def test_builder_runs_without_installed_packages_as_the_pre_deploy_action_does() -> None:
    # s.yaml runs `python3 -m chatapp_mass.deploy.packaging KEY` from shared/: stdlib only at import.
    result = subprocess.run(
        [sys.executable, "-S", "-m", "chatapp_mass.deploy.packaging", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT / "shared",
        env={},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "OUT/<key>" in result.stdout


def test_missing_entry_point_is_refused(tmp_path: Path) -> None:
    with pytest.raises(packaging.PackagingError, match=r"functions/nothing/index\.py not found"):
        packaging.build("nothing", tmp_path / "nothing")


# ------------------------------------------------------------------------------------------------- lock


def _dist_infos(package: Path) -> dict[str, str]:
    """name -> version from the ``<name>-<version>.dist-info`` directories (as pip names them)."""
    found = {}
    for path in package.glob("*.dist-info"):
        name, _, version = path.name[: -len(".dist-info")].rpartition("-")
        found[packaging.canonical_name(name)] = version
    return found


def test_every_distribution_a_package_ships_is_in_the_lock_at_its_version(built: dict[str, Built]) -> None:
    locked = packaging.read_pins(ROOT / packaging.LOCK_FILE)
    for package in built.values():
        for root in (package.cloud, package.local):
            shipped = _dist_infos(root)
            assert shipped, root
            assert {name: v for name, v in shipped.items() if locked.get(name) != v} == {}, root
        # The lock is resolved for the runtime s.yaml deploys: it is exactly what that package ships.
        assert _dist_infos(package.cloud) == locked


def test_lock_pins_every_requirement_and_names_the_runtime_it_is_for() -> None:
    lock_text = (ROOT / packaging.LOCK_FILE).read_text()
    packaging.check_lock(ROOT / "requirements.txt", ROOT / packaging.LOCK_FILE)  # not stale
    for runtime in {spec.runtime for spec in specs()}:
        assert f"FC runtime {runtime}) on {packaging.DEFAULT_PLATFORM}" in lock_text


def test_build_installs_under_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Both pip steps of a cold build (sdist wheels, platform install) are given the lock as constraints.
    commands: list[list[str]] = []

    class Stop(Exception):
        pass

    def record(command: list[str], what: str, **_: object) -> None:
        commands.append(command)
        if " install " in f" {' '.join(command)} ":
            raise Stop

    monkeypatch.setattr(packaging, "_run", record)
    with pytest.raises(Stop):
        packaging.build("sender", tmp_path / "out", cache_dir=tmp_path / "cache")
    assert [c[c.index("-m") + 2] for c in commands] == ["wheel", "install"]
    for command in commands:
        assert command[command.index("-c") + 1] == str(ROOT / packaging.LOCK_FILE)


def _project(tmp_path: Path, lock: str | None) -> Path:
    (tmp_path / "functions" / "f").mkdir(parents=True)
    (tmp_path / "functions" / "f" / "index.py").write_text("def handler(event, context): pass\n")
    (tmp_path / "shared" / "chatapp_mass").mkdir(parents=True)
    (tmp_path / "requirements.txt").write_text("pydantic==2.14.3\nPyYAML==6.0.3\n")
    if lock is not None:
        (tmp_path / packaging.LOCK_FILE).write_text(lock)
    return tmp_path


def test_build_refuses_a_missing_or_stale_lock(tmp_path: Path) -> None:
    with pytest.raises(packaging.PackagingError, match=r"constraints\.txt not found.*make lock"):
        packaging.build("f", tmp_path / "out", project_root=_project(tmp_path / "a", None))
    stale = _project(tmp_path / "b", "pydantic==2.14.3\npyyaml==6.0.2\n")
    with pytest.raises(
        packaging.PackagingError,
        match=r"stale: requirements.txt pins pyyaml==6\.0\.3 \(lock: "
        r"6\.0\.2\); regenerate it with `make lock`",
    ):
        packaging.build("f", tmp_path / "out", project_root=stale)
    unpinned = _project(tmp_path / "c", "pydantic>=2\npyyaml==6.0.3\n")
    with pytest.raises(packaging.PackagingError, match=r"constraints\.txt:1: 'pydantic>=2' is not pinned"):
        packaging.build("f", tmp_path / "out", project_root=unpinned)


def test_an_install_holding_an_unlocked_distribution_is_refused(tmp_path: Path) -> None:
    lock = tmp_path / packaging.LOCK_FILE
    lock.write_text("typing-extensions==4.16.0\n")
    for name, version in (("typing_extensions", "4.16.0"), ("Async_Timeout", "5.0.1")):
        info = tmp_path / "target" / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nbody: x\n"
        )
    with pytest.raises(
        packaging.PackagingError,
        match=r"holds async-timeout==5\.0\.1, not pinned so in "
        r"constraints\.txt: regenerate it",
    ):
        packaging._check_installed(tmp_path / "target", lock, "python3.10")
    lock.write_text("typing-extensions==4.16.0\nasync-timeout==5.0.1\n")
    packaging._check_installed(tmp_path / "target", lock, "python3.10")
