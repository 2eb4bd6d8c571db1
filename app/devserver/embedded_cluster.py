"""How the embedded PostgreSQL's data folder comes to be: initdb with a generated password,
and the password a data folder from before passwords (trust) is given."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from app.db.server_admin import set_password_statement
from app.devserver.embedded_auth import (
    AUTH_METHOD,
    new_password,
    password_path,
    write_hba_conf,
    write_password_file,
)
from app.devserver.errors import EmbeddedPostgresError


def create_cluster(data_dir: Path, user: str, bindir: Path, wrapper: list[str]) -> None:
    """A new cluster with a generated password, made aside and moved into place whole.

    initdb wants an empty folder, so the password file is written next to it and moved in
    afterwards; moving the finished folder in last means an interrupted initdb never leaves
    a cluster without its password file behind.
    """
    if data_dir.exists() and any(data_dir.iterdir()):
        raise EmbeddedPostgresError(
            f"{data_dir} is not empty but holds no PostgreSQL cluster; remove it"
        )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{data_dir.name}-", dir=data_dir.parent))
    try:
        pwfile = staging / "password"
        write_password_file(pwfile, new_password())
        cluster = staging / "data"
        result = subprocess.run(
            [
                *wrapper,
                str(bindir / "initdb"),
                "-D",
                str(cluster),
                "-U",
                user,
                f"--auth={AUTH_METHOD}",
                f"--pwfile={pwfile}",
                "--locale=C",
                "-E",
                "UTF8",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {result.stderr.strip()}")
        os.replace(pwfile, password_path(cluster))
        os.replace(cluster, data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def give_trust_cluster_a_password(
    data_dir: Path, user: str, bindir: Path, wrapper: list[str]
) -> None:
    """Set a new password on a trust-era cluster, in single-user mode: no connection is
    accepted while it runs, so there is no moment at which the old trust is usable.

    The password file is put in place last: until then the cluster still counts as one
    from before passwords, and the next start simply does this again.
    """
    password = new_password()
    pending = password_path(data_dir).with_name(f"{password_path(data_dir).name}.new")
    pending.unlink(missing_ok=True)
    write_password_file(pending, password)
    result = subprocess.run(
        [
            *wrapper,
            str(bindir / "postgres"),
            "--single",
            "-D",
            str(data_dir),
            f"-cpassword_encryption={AUTH_METHOD}",
            # A failed statement is not echoed into the output (it holds the password).
            "-clog_min_error_statement=panic",
            "postgres",
        ],
        input=set_password_statement(user, password) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    # The single-user backend exits 0 even when the statement failed.
    problems = [
        line.split(marker, 1)[1].strip()
        for line in result.stderr.replace(password, "***").splitlines()
        for marker in ("FATAL:", "ERROR:")
        if marker in line
    ]
    if result.returncode != 0 or problems:
        pending.unlink(missing_ok=True)
        raise EmbeddedPostgresError(
            f"{data_dir} is from before passwords and could not be given one "
            f"({'; '.join(problems) or f'exit code {result.returncode}'}); stop the "
            "server that uses it and start again, or start afresh with `make clean-data`"
        )
    write_hba_conf(data_dir)
    os.replace(pending, password_path(data_dir))
