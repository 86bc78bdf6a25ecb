"""Build the Function Compute code package of one function, as s.yaml's ``code: ./build/<key>`` expects.

Longer than 500 lines: one build tool end to end (dependencies installed for another platform, the lock, the
cache, the package layout, its command line), read top to bottom as the steps of one build.

A package is a directory whose root holds:

- ``functions/<key>/*`` — the thin entry point (``index.py`` with ``handler``) and anything beside it;
- ``chatapp_mass/`` — the shared package from ``shared/``, **without** ``deploy/`` (this builder and the
  s.yaml tools, which need PyYAML and a project tree) and the two entry points that drive the loopback
  emulators (``entry/localcloud.py``, ``entry/invoke.py``: they import ``alibaba_localcloud``, the emulators'
  own package beside this one, which is never shipped: nothing a handler imports needs them);
- the runtime dependencies of ``requirements.txt``, installed for the function's runtime, not for the
  machine that builds: ``pip install --target --platform manylinux2014_x86_64 --python-version 3.12
  --implementation cp --only-binary=:all: -c constraints.txt``. Everything in requirements.txt is installed,
  PyYAML too (the cloud does not need it, but one list that says "the package installs exactly these" beats
  an exclusion list that drifts).

The lock: ``constraints.txt`` (project root) pins every distribution a package ships, direct or transitive,
at the version it ships. It is written by :func:`lock` (``make lock``, or ``--lock`` on the command line)
from the same platform install the builder runs, for ``python3.12`` on ``manylinux2014_x86_64`` (the runtime
and platform of every function in s.yaml) — not from this machine's interpreter, whose wheels and markers
may differ. A build refuses a lock that is missing or does not pin requirements.txt's versions, installs
with ``-c constraints.txt``, and refuses a result holding a distribution the lock does not pin at that
version (a build for another runtime that needs more says so: regenerate with ``--runtime``). ``make setup``
installs the development virtualenv with the same constraints. The lock has no hashes: the dependencies
published only as sdists are installed from wheels built here (below), whose hashes are not PyPI's, so
``--require-hashes`` cannot hold for the platform install.

Two wrinkles of ``--platform`` installs, and how they are handled:

- pip refuses source distributions there, and some dependencies publish only sdists (oss2,
  aliyun-python-sdk-core, crcmod, several alibabacloud helpers). They are first built into pure-Python
  wheels on this machine (``pip wheel`` with the C compiler disabled, so crcmod falls back to its pure
  implementation instead of producing a wheel for this machine's Python) and offered with ``--find-links``.
- when the lock is written, transitive dependencies resolve to the newest release that has a wheel for
  the platform (e.g. numpy 2.2.x, the last with manylinux2014 wheels) — possibly older than a local
  virtualenv would pick unconstrained; the lock then holds them there, and ``make setup`` too.

Both steps are cached under ``$CHATAPP_BUILD_CACHE`` (default ``~/.cache/chatapp-mass/build``), keyed by
the content of requirements.txt and constraints.txt, the Python version and the platform: a repeated
build only links files.
pip's own HTTP cache makes a cold build after a requirements change cheap too.

Command line (run from ``shared/`` it needs no install: stdlib and pip only)::

    python -m chatapp_mass.deploy.packaging [KEY ...] [--out build] [--runtime python3.12]
    python -m chatapp_mass.deploy.packaging --lock [--runtime python3.12]

builds ``build/<key>`` for each key (default: every ``functions/<key>/`` with an ``index.py``); ``--lock``
rewrites constraints.txt instead.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform as platform_module
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from chatapp_mass.core.errors import ChatAppMassError

PROJECT_ROOT = Path(__file__).resolve().parents[3]  # shared/chatapp_mass/deploy/packaging.py
DEFAULT_RUNTIME = "python3.12"
DEFAULT_PLATFORM = "manylinux2014_x86_64"
SHARED_PACKAGE = "chatapp_mass"
# relative to chatapp_mass/: not shipped to the cloud (see the module doc)
EXCLUDED = ("deploy", "entry/localcloud.py", "entry/invoke.py")
LOCK_FILE = "constraints.txt"  # at the project root, beside requirements.txt
CACHE_ENV = "CHATAPP_BUILD_CACHE"
BUILDER_VERSION = "2"  # part of every cache key: bump when the layout of a cached directory changes

_IGNORED = shutil.ignore_patterns(
    "__pycache__", "*.pyc", "*.pyo", "*.egg-info", ".pytest_cache", ".mypy_cache"
)
_RUNTIME = re.compile(r"^python(\d+)\.(\d+)$")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)")

Log = Callable[[str], None]


class PackagingError(ChatAppMassError):
    """A code package cannot be built; the message says which step failed and what to do."""


def _quiet(message: str) -> None:
    pass


# ------------------------------------------------------------------------------------------------ build


def build(
    function_resource_key: str,
    out_dir: str | os.PathLike[str],
    runtime: str = DEFAULT_RUNTIME,
    platform: str | Sequence[str] = DEFAULT_PLATFORM,
    *,
    project_root: str | os.PathLike[str] = PROJECT_ROOT,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Log = _quiet,
) -> Path:
    """Assemble the package of ``functions/<function_resource_key>/`` in ``out_dir`` (replaced whole).

    ``runtime`` is an FC runtime name (``python3.12``) or any ``pythonX.Y`` (the tests build one for the
    interpreter that imports it). ``platform`` is one pip platform tag or several. Returns ``out_dir``.
    """
    root = Path(project_root).resolve()
    out = Path(out_dir).resolve()
    function_dir = root / "functions" / function_resource_key
    shared = root / "shared" / SHARED_PACKAGE
    requirements = root / "requirements.txt"
    constraints = root / LOCK_FILE
    if not (function_dir / "index.py").is_file():
        raise PackagingError(
            f"{function_dir / 'index.py'} not found: a function's entry point is functions/<key>/index.py "
            f"(key = the s.yaml resource key, e.g. ingest or sender)"
        )
    if not shared.is_dir():
        raise PackagingError(f"{shared} not found: run the builder from a checkout of the project")
    if not requirements.is_file():
        raise PackagingError(f"{requirements} not found: the runtime dependencies are read from it")
    check_lock(requirements, constraints)
    python_version = python_version_of(runtime)
    platforms = (platform,) if isinstance(platform, str) else tuple(platform)
    started = time.monotonic()

    deps = dependencies(
        requirements,
        python_version,
        platforms,
        constraints=constraints,
        cache_dir=_cache_root(cache_dir),
        log=log,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        shutil.copytree(deps, staging, dirs_exist_ok=True, copy_function=_link_or_copy)
        _copy_new(
            shared,
            staging / SHARED_PACKAGE,
            ignore=_ignore_with(EXCLUDED, at=shared),
        )
        for entry in sorted(function_dir.iterdir()):
            if _IGNORED(str(function_dir), [entry.name]):
                continue
            target = staging / entry.name
            if target.exists():
                raise PackagingError(
                    f"functions/{function_resource_key}/{entry.name} clashes with a dependency or the shared "
                    f"package of the same name at the package root: rename it"
                )
            if entry.is_dir():
                shutil.copytree(entry, target, ignore=_IGNORED)
            else:
                shutil.copy2(entry, target)
        _replace(out, staging)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    files, size = _tree_size(out)
    log(
        f"{out}: {function_resource_key} for {runtime} ({', '.join(platforms)}), {files:,} files, "
        f"{size / 1e6:,.0f} MB, {time.monotonic() - started:.1f} s"
    )
    return out


def python_version_of(runtime: str) -> str:
    """``python3.12`` -> ``3.12``; anything else is refused (only Python runtimes are packaged here)."""
    match = _RUNTIME.match(runtime)
    if not match:
        raise PackagingError(
            f"runtime {runtime!r} is not a Python runtime (pythonX.Y, e.g. {DEFAULT_RUNTIME})"
        )
    return f"{match.group(1)}.{match.group(2)}"


def running_runtime() -> str:
    """The runtime name of the interpreter running this code (``python3.11`` here, say)."""
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def running_platform() -> str:
    """A manylinux platform tag for this machine's architecture (for a package this interpreter imports)."""
    return f"manylinux2014_{platform_module.machine() or 'x86_64'}"


# ------------------------------------------------------------------------------------------ dependencies


def dependencies(
    requirements: Path,
    python_version: str,
    platforms: Sequence[str],
    *,
    constraints: Path | None,
    cache_dir: Path,
    log: Log = _quiet,
) -> Path:
    """The cached directory holding requirements.txt installed for ``python_version`` on ``platforms``.

    With ``constraints`` (the lock) every distribution installed must be pinned there at its version;
    without (only :func:`lock` does that), transitive dependencies resolve freely.
    """
    lock_bytes = constraints.read_bytes() if constraints is not None else b"unlocked"
    digest = _digest(requirements.read_bytes(), lock_bytes, python_version, *platforms)
    target = cache_dir / "deps" / f"py{python_version}-{'+'.join(platforms)}-{digest}"
    if target.is_dir():
        return target
    wheelhouse = _sdist_wheels(requirements, constraints, cache_dir, log)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        log(f"installing {requirements.name} for Python {python_version} ({', '.join(platforms)})")
        _run(
            install_command(staging, requirements, constraints, wheelhouse, python_version, platforms),
            "installing the runtime dependencies for the function's platform",
            hint=f"every dependency needs a wheel for cp{python_version.replace('.', '')} on "
            f"{'/'.join(platforms)} on the index, or a pure-Python sdist (built into {wheelhouse})",
        )
        shutil.rmtree(staging / "bin", ignore_errors=True)  # console scripts for this machine's Python
        if constraints is not None:
            _check_installed(staging, constraints, f"python{python_version}")
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not a concurrent build that finished first
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def install_command(
    target: Path,
    requirements: Path,
    constraints: Path | None,
    wheelhouse: Path,
    python_version: str,
    platforms: Sequence[str],
) -> list[str]:
    """The ``pip install`` of requirements.txt (under the lock, when given) for the function's platform."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--target",
        str(target),
        "--no-compile",
        *[arg for tag in platforms for arg in ("--platform", tag)],
        "--python-version",
        python_version,
        "--implementation",
        "cp",
        "--only-binary=:all:",
        "--find-links",
        str(wheelhouse),
        "-r",
        str(requirements),
        *(("-c", str(constraints)) if constraints is not None else ()),
    ]


def _sdist_wheels(requirements: Path, constraints: Path | None, cache_dir: Path, log: Log) -> Path:
    """Pure-Python wheels for every requirement (direct or not) that is published only as an sdist.

    ``pip wheel`` on the whole requirements file (for this interpreter) yields a wheel for everything:
    downloaded ones and ones built from sdists. Only the pure ones (``*-none-any.whl``) are kept; the
    platform-specific ones come from the index for the target. The C compiler is disabled so that an sdist
    with an optional extension (crcmod) builds pure; a private pip cache keeps out wheels built with it.
    """
    lock_bytes = constraints.read_bytes() if constraints is not None else b"unlocked"
    wheelhouse = cache_dir / "wheelhouse" / _digest(requirements.read_bytes(), lock_bytes)
    done = wheelhouse / ".complete"
    if done.is_file():
        return wheelhouse
    log("building pure-Python wheels for dependencies published only as source")
    scratch = Path(tempfile.mkdtemp(prefix=".wheels-", dir=_mkdir(cache_dir)))
    try:
        environ = dict(os.environ, CC="false", CXX="false", LDSHARED="false")
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--disable-pip-version-check",
                "--cache-dir",
                str(cache_dir / "pip-sdist"),
                "--wheel-dir",
                str(scratch),
                "-r",
                str(requirements),
                *(("-c", str(constraints)) if constraints is not None else ()),
            ],
            "building wheels from source distributions",
            environ=environ,
            hint="a dependency published only as source needs a C compiler; it cannot be packaged for "
            "another platform from here",
        )
        wheelhouse.mkdir(parents=True, exist_ok=True)
        for wheel in scratch.glob("*-none-any.whl"):
            shutil.move(str(wheel), wheelhouse / wheel.name)
        done.write_text(json.dumps(sorted(p.name for p in wheelhouse.glob("*.whl")), indent=1) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return wheelhouse


def _run(command: list[str], what: str, *, hint: str, environ: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, capture_output=True, text=True, env=environ)
    if result.returncode != 0:
        output = "\n".join(
            line
            for line in (result.stderr + result.stdout).splitlines()
            if "is ignored: it is neither a file nor a directory" not in line
        )
        raise PackagingError(
            f"{what} failed (exit {result.returncode}): {hint}.\n$ {' '.join(command)}\n{output[-4000:]}"
        )


# ------------------------------------------------------------------------------------------------- lock


def canonical_name(name: str) -> str:
    """PEP 503 normalised distribution name
    (``PyYAML`` -> ``pyyaml``, ``typing_extensions`` -> ``typing-extensions``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements or constraints file, by canonical name (comments skipped)."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        match = _PIN.match(line)
        if not match:
            raise PackagingError(f"{path.name}:{number}: {raw.strip()!r} is not pinned: write name==version")
        pins[canonical_name(match.group(1))] = match.group(2)
    return pins


def installed_distributions(directory: Path) -> dict[str, str]:
    """The distributions a ``pip install --target`` directory holds: canonical name -> version (from METADATA)."""
    found: dict[str, str] = {}
    for metadata in directory.glob("*.dist-info/METADATA"):
        fields: dict[str, str] = {}
        with metadata.open(encoding="utf-8", errors="replace") as lines:
            for line in lines:
                if not line.strip():
                    break  # the headers end at the first blank line
                key, _, value = line.partition(":")
                fields.setdefault(key.strip().lower(), value.strip())
        found[canonical_name(fields["name"])] = fields["version"]
    return found


def check_lock(requirements: Path, constraints: Path) -> None:
    """Refuse a missing lock, or one that does not pin every requirement at requirements.txt's version."""
    if not constraints.is_file():
        raise PackagingError(
            f"{constraints} not found: it locks every dependency the packages ship; write it with `make lock`"
        )
    locked = read_pins(constraints)
    stale = [
        f"{name}=={version} (lock: {locked.get(name, 'absent')})"
        for name, version in read_pins(requirements).items()
        if locked.get(name) != version
    ]
    if stale:
        raise PackagingError(
            f"{constraints.name} is stale: requirements.txt pins {', '.join(stale)}; "
            f"regenerate it with `make lock`"
        )


def _check_installed(directory: Path, constraints: Path, runtime: str) -> None:
    locked = read_pins(constraints)
    unlocked = sorted(
        f"{name}=={version}"
        for name, version in installed_distributions(directory).items()
        if locked.get(name) != version
    )
    if unlocked:
        raise PackagingError(
            f"the install for {runtime} holds {', '.join(unlocked)}, not pinned so in "
            f"{constraints.name}: regenerate it (`make lock`, or `--lock --runtime {runtime}`)"
        )


def lock(
    project_root: str | os.PathLike[str] = PROJECT_ROOT,
    runtime: str = DEFAULT_RUNTIME,
    platform: str | Sequence[str] = DEFAULT_PLATFORM,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    log: Log = _quiet,
) -> Path:
    """Write ``constraints.txt``: every distribution requirements.txt installs for ``runtime`` on ``platform``.

    The install is the builder's own (same pip flags, same sdist wheels), unconstrained, into a scratch
    directory; the versions are read from what it installed. Returns the lock's path.
    """
    root = Path(project_root).resolve()
    requirements = root / "requirements.txt"
    if not requirements.is_file():
        raise PackagingError(f"{requirements} not found: the lock is resolved from it")
    python_version = python_version_of(runtime)
    platforms = (platform,) if isinstance(platform, str) else tuple(platform)
    cache = _cache_root(cache_dir)
    scratch = Path(tempfile.mkdtemp(prefix=".lock-", dir=_mkdir(cache)))
    try:
        wheelhouse = _sdist_wheels(requirements, None, cache, log)
        log(f"resolving {requirements.name} for Python {python_version} ({', '.join(platforms)})")
        _run(
            install_command(scratch / "target", requirements, None, wheelhouse, python_version, platforms),
            "resolving the runtime dependencies for the function's platform",
            hint="every dependency needs a wheel for the platform on the index, or a pure-Python sdist",
        )
        pins = installed_distributions(scratch / "target")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    header = [
        "# The lock of the FC code packages: every distribution they ship (direct or transitive) and its version.",
        f"# For CPython {python_version} (FC runtime {runtime}) on {', '.join(platforms)}: the runtime and",
        "# platform of every function in s.yaml. Used as a pip constraints file by the package builder",
        "# (chatapp_mass.deploy.packaging) and by `make setup`. No hashes: see the builder's module doc.",
        "# Generated by `make lock` from requirements.txt; do not edit by hand.",
    ]
    target = root / LOCK_FILE
    target.write_text("\n".join([*header, *(f"{name}=={pins[name]}" for name in sorted(pins))]) + "\n")
    log(f"{target}: {len(pins)} distributions for {runtime} ({', '.join(platforms)})")
    return target


# -------------------------------------------------------------------------------------------- file work


def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir).resolve()
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "chatapp-mass" / "build"


def _digest(*parts: bytes | str) -> str:
    hasher = hashlib.sha256(BUILDER_VERSION.encode())
    for part in parts:
        hasher.update(b"\0" + (part.encode() if isinstance(part, str) else part))
    return hasher.hexdigest()[:16]


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _link_or_copy(source: str, target: str) -> None:
    """Hard-link from the cache when possible (fast, no space); copy across file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _ignore_with(excluded: Sequence[str], *, at: Path) -> Callable[[str, list[str]], set[str]]:
    """The common ignore patterns everywhere, and the paths ``excluded`` (relative to ``at``)."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(_IGNORED(directory, names))
        here = Path(directory).relative_to(at)
        ignored |= {name for name in names if (here / name).as_posix() in excluded}
        return ignored

    return ignore


def _copy_new(source: Path, target: Path, *, ignore: Callable[[str, list[str]], set[str]]) -> None:
    if target.exists():
        raise PackagingError(f"a dependency installs a top-level {target.name!r}, the shared package's name")
    shutil.copytree(source, target, ignore=ignore)


def _replace(out: Path, staging: Path) -> None:
    """Put ``staging`` at ``out`` so that no reader ever sees a half-written package."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _tree_size(path: Path) -> tuple[int, int]:
    files = size = 0
    for item in path.rglob("*"):
        if item.is_file():
            files += 1
            size += item.stat().st_size
    return files, size


# ------------------------------------------------------------------------------------------ command line


def function_keys(project_root: Path = PROJECT_ROOT) -> list[str]:
    """Every ``functions/<key>/`` that has an ``index.py``."""
    functions = project_root / "functions"
    return sorted(p.parent.name for p in functions.glob("*/index.py")) if functions.is_dir() else []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m chatapp_mass.deploy.packaging",
        description="Build Function Compute code packages (functions/<key>/ + the shared package + the "
        "runtime dependencies for the FC runtime) into OUT/<key>, as s.yaml's code paths expect.",
    )
    parser.add_argument(
        "keys",
        nargs="*",
        metavar="KEY",
        help="s.yaml resource keys, e.g. ingest sender (default: every functions/<key>/index.py)",
    )
    parser.add_argument("--out", default=None, help="output directory (default: <project>/build)")
    parser.add_argument("--runtime", default=DEFAULT_RUNTIME, help=f"FC runtime (default {DEFAULT_RUNTIME})")
    parser.add_argument(
        "--platform",
        action="append",
        default=None,
        help=f"pip platform tag, repeatable (default {DEFAULT_PLATFORM})",
    )
    parser.add_argument("--root", default=str(PROJECT_ROOT), help="project root (default: this checkout)")
    parser.add_argument("--cache-dir", default=None, help=f"build cache (default ${CACHE_ENV} or ~/.cache)")
    parser.add_argument(
        "--lock",
        action="store_true",
        help=f"rewrite {LOCK_FILE} (every distribution the packages ship, for --runtime and "
        f"--platform) instead of building",
    )
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    if args.lock:
        if args.keys:
            parser.error("--lock takes no KEY: the lock covers every function")
        try:
            lock(
                root,
                runtime=args.runtime,
                platform=args.platform or DEFAULT_PLATFORM,
                cache_dir=args.cache_dir,
                log=lambda m: print(m, file=sys.stderr),
            )
        except PackagingError as exc:
            print(f"packaging: {exc}", file=sys.stderr)
            return 1
        return 0
    keys = args.keys or function_keys(root)
    if not keys:
        print(f"nothing to build: no functions/<key>/index.py under {root}", file=sys.stderr)
        return 2
    out = Path(args.out).resolve() if args.out else root / "build"
    try:
        for key in keys:
            build(
                key,
                out / key,
                runtime=args.runtime,
                platform=args.platform or DEFAULT_PLATFORM,
                project_root=root,
                cache_dir=args.cache_dir,
                log=lambda m: print(m, file=sys.stderr),
            )
    except PackagingError as exc:
        print(f"packaging: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
