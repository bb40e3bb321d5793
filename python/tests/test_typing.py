"""The type stubs match the built module (mypy's stubtest) and type-check typical uses
(mypy --strict on the package and tests/typing_check.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def run(*args: str, cwd: Path = HERE.parent) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd)


def test_stubs_match_the_extension_module(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    # Elsewhere than python/, so that the installed package (module and stubs) is checked.
    out = run("mypy.stubtest", "lodcache._lodcache", "--ignore-missing-stub", cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_and_uses_type_check_strictly() -> None:
    pytest.importorskip("mypy")
    out = run("mypy", "--strict", "--no-incremental", "--cache-dir=/dev/null",
              "lodcache", "ct_thumbnail", "tests/typing_check.py")
    assert out.returncode == 0, out.stdout + out.stderr
