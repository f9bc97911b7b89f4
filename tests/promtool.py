"""`promtool check metrics` on a scrape: the Prometheus project's own linter of the text format.

promtool comes with Debian's ``prometheus`` package (``.ci/run`` installs it). Where it is
missing a test skips with that reason — except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def promtool_check(text: bytes | str, where: str) -> None:
    """Fail unless ``promtool check metrics`` finds nothing to say about ``text``."""
    tool = shutil.which("promtool")
    if tool is None:
        message = "promtool is not installed (apt-get install prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; .ci/run should have installed it")
        pytest.skip(message)
    data = text.encode() if isinstance(text, str) else text
    proc = subprocess.run([tool, "check", "metrics"], input=data, capture_output=True, timeout=30)
    report = (proc.stdout + proc.stderr).decode().strip()
    assert proc.returncode == 0 and not report, f"promtool on {where}:\n{report}"


def parse_samples(text: str) -> dict[str, float]:
    """``{'name{labels}': value}`` of every sample of a scrape (labels as printed)."""
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples
