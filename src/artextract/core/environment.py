"""`env.json`: what produced a folder (package versions, git commit, device, command line)."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from artextract.core.atomic import write_json
from artextract.core.version import VERSION

_PACKAGES = ("torch", "torchvision", "timm", "lightning", "numpy", "pillow", "pandas", "pyarrow", "scikit-learn")


def git_commit(start: Path | None = None) -> str | None:
    """The git commit of the source checkout this package runs from, or None outside a checkout."""
    start = start or Path(__file__).resolve().parent
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=start, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    return result.stdout.strip() or None


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"artextract": VERSION, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_summary() -> dict[str, Any]:
    """CPU count and, if torch is already imported and sees one, the accelerator (never imports torch itself)."""
    summary: dict[str, Any] = {"cpu_count": os.cpu_count(), "platform": platform.platform()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        summary["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return summary


def environment_record() -> dict[str, Any]:
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "cwd": os.getcwd(),
        "host": socket.gethostname(),
        "git_commit": git_commit(),
        "versions": package_versions(),
        "device": device_summary(),
    }


def write_environment(path: str | os.PathLike[str]) -> Path:
    """Write the record to `path` (a folder's env.json: layout.ENVIRONMENT names it)."""
    path = Path(path)
    write_json(path, environment_record())
    return path
