"""Reading and writing one secret file: written 0400 in one step, given to its service's uid,
read back even once it belongs to that uid. Used by the secret files, the mail certificates
and rotation alike."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


class SecretSetupError(RuntimeError):
    """A secret could not be written or given to its service's uid."""


def write_secret(path: Path, content: str) -> None:
    """Write a secret file 0400 in one step (temp file, then rename): no reader sees half."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(content)
    os.replace(tmp, path)


def chown_secret(path: Path, uid: int, gid: int) -> None:
    """Give a secret file to its service's uid (directly as root, else by `sudo -n chown`)."""
    st = path.stat()
    if (st.st_uid, st.st_gid) == (uid, gid):
        return
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
        return
    if os.environ.get("STACKCHECK_SECRETS_NO_CHOWN") == "1" or sys.platform == "darwin":
        return  # Docker Desktop maps file ownership to the container user itself
    sudo = shutil.which("sudo")
    if (
        sudo
        and subprocess.run(
            [sudo, "-n", "chown", f"{uid}:{gid}", str(path)], capture_output=True
        ).returncode
        == 0
    ):
        return
    raise SecretSetupError(
        f"{path} must be owned by uid {uid} so only its service can read it, and this user "
        "cannot chown: run `./run setup` as root (or with passwordless sudo), or set "
        "STACKCHECK_SECRETS_NO_CHOWN=1 where the engine maps ownership itself (Docker Desktop)"
    )


def read_secret(path: Path) -> str:
    """A secret file's text, through `sudo -n cat` where it is already given to another uid."""
    try:
        return path.read_text(encoding="utf-8")
    except PermissionError:
        sudo = shutil.which("sudo")
        if not sudo:
            raise
        return subprocess.run(
            [sudo, "-n", "cat", str(path)], capture_output=True, text=True, check=True
        ).stdout
