"""The emulators are a package of their own: ``alibaba_localcloud`` imports nothing from the product, and its
README's pytest example runs, as written, in another project.

Both run in a fresh interpreter whose import system refuses ``chatapp_mass`` (the product sits beside the
emulators in ``shared/``, so only a refusal proves that nothing reaches for it). The README example is
copied into a scratch directory as ``conftest.py`` and ``test_example.py`` and run by pytest there, with no
configuration of this project (its rootdir is the scratch directory).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
EMULATORS = SHARED / "alibaba_localcloud"

REFUSE_PRODUCT = """
import importlib.abc, sys

class RefuseProduct(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "chatapp_mass" or name.startswith("chatapp_mass."):
            raise ImportError(f"{name}: the emulators must not import the product")
        return None

sys.meta_path.insert(0, RefuseProduct())
"""


def _environ() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"
    environ["PYTHONPATH"] = str(SHARED)
    return environ


def test_no_module_of_the_emulators_names_the_product_in_an_import() -> None:
    offenders = []
    for path in sorted(EMULATORS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [
                f"{path.relative_to(SHARED)}:{node.lineno} {n}" for n in names if n.startswith("chatapp_mass")
            ]
    assert offenders == []


def test_every_module_of_the_emulators_imports_with_the_product_refused() -> None:
    script = (
        REFUSE_PRODUCT
        + """
import pkgutil, alibaba_localcloud
names = [m.name for m in pkgutil.walk_packages(alibaba_localcloud.__path__, "alibaba_localcloud.")
         if not m.name.endswith(".__main__")]  # those run a server until interrupted
for name in names:
    __import__(name)
assert not [m for m in sys.modules if m.startswith("chatapp_mass")]
print(len(names))
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_environ(), timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) >= 30  # every service's models, responses, exceptions, server, cli, ...


def _readme_blocks() -> dict[str, str]:
    readme = (EMULATORS / "README.md").read_text(encoding="utf-8")
    blocks = dict(re.findall(r"`([\w.]+\.py)`:\n\n```python\n(.*?)```", readme, re.S))
    assert set(blocks) == {"conftest.py", "test_example.py"}, sorted(blocks)
    return blocks


def test_the_readme_example_runs_as_another_projects_tests(tmp_path: Path) -> None:
    for name, code in _readme_blocks().items():
        (tmp_path / name).write_text(code, encoding="utf-8")
    script = (
        REFUSE_PRODUCT
        + f"""
import pytest
sys.exit(pytest.main(["-q", "-p", "no:cacheprovider", "-W", "error::pytest.PytestUnraisableExceptionWarning",
                      {str(tmp_path)!r}]))
"""
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=_environ(),
        cwd=tmp_path,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert re.search(r"\b4 passed\b", done.stdout), done.stdout[-2000:]
