"""Chromium trusting a private CA as a user's browser does: the CA in the NSS database of the
browser's home directory (~/.pki/nssdb, where Chromium on Linux reads user trust), added with
certutil (libnss3-tools). No certificate check is switched off."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from tests.requirements import require


def environment_trusting(ca: Path, home: Path) -> dict[str, str]:
    """The environment for a Chromium whose home is `home`, where `ca` is a trusted authority
    for web servers."""
    require(shutil.which("certutil") is not None, "certutil", "apt-get install libnss3-tools")
    database = f"sql:{home / '.pki' / 'nssdb'}"
    (home / ".pki" / "nssdb").mkdir(parents=True, exist_ok=True)
    for argv in (
        ["certutil", "-N", "-d", database, "--empty-password"],
        ["certutil", "-A", "-d", database, "-t", "C,,", "-n", "test CA", "-i", str(ca)],
    ):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, f"{' '.join(argv)}: {result.stderr}"
    return {**os.environ, "HOME": str(home)}
