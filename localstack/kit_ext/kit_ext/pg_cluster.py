"""One PostgreSQL cluster in its own directory: init, start, stop, backup, restore.

Layout: <dir>/data (PGDATA), <dir>/run (its socket), <dir>/postgres.log. As root, the
server and initdb run as the postgres user. Passwords never reach a command line or a
log: initdb reads a 0600 file that is removed at once, ALTER ROLE goes in on stdin with
statement logging off.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tarfile
import tempfile

PG_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_basebackup", "psql")
PG_FALLBACK_DIRS = ("/usr/lib/postgresql/15/bin",)
TIMEOUT = 120


class DataError(Exception):
    """A PostgreSQL operation failed; the message is safe to show."""


def _bin_dir() -> str:
    candidates = [os.environ.get("KIT_PG_BIN", "")]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    candidates += PG_FALLBACK_DIRS
    for d in candidates:
        if d and all(os.access(os.path.join(d, t), os.X_OK) for t in PG_TOOLS):
            return d
    raise DataError(
        "PostgreSQL server binaries not found (need initdb, pg_ctl, postgres, "
        "pg_basebackup, psql): apt-get install -y postgresql-15, or set KIT_PG_BIN"
    )


def _as_owner(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _owner_ids() -> tuple[int, int]:
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    pw = pwd.getpwnam("postgres")
    return pw.pw_uid, pw.pw_gid


def _chown_tree(path: str) -> None:
    uid, gid = _owner_ids()
    for root, dirs, files in os.walk(path):
        os.chown(root, uid, gid)
        for name in dirs + files:
            os.lchown(os.path.join(root, name), uid, gid)


def _run(cmd: list[str], what: str, env: dict | None = None, stdin: str | None = None) -> str:
    try:
        out = subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env={**os.environ, **(env or {})},
            check=False,
        )
    except subprocess.TimeoutExpired as e:
        raise DataError(f"{what}: timed out after {TIMEOUT}s") from e
    if out.returncode != 0:
        detail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise DataError(f"{what} failed: {' | '.join(detail)}")
    return out.stdout


def free_port(preferred: int | None = None) -> int:
    """The preferred loopback port when free, else one the kernel picks."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise DataError("no free loopback port")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class Cluster:
    """One PostgreSQL cluster in its own directory."""

    def __init__(self, path: str, port: int, user: str):
        self.path, self.port, self.user = path, port, user
        self.data = os.path.join(path, "data")
        self.sock = os.path.join(path, "run")
        if len(self.sock) > 90:  # a socket path must fit in 107 bytes
            self.sock = tempfile.mkdtemp(prefix="kit-pg-")
        self.log = os.path.join(path, "postgres.log")

    def _prepare_dir(self) -> None:
        os.makedirs(self.sock, mode=0o700, exist_ok=True)
        os.chmod(self.path, 0o700)
        _chown_tree(self.path)
        os.chown(self.sock, *_owner_ids())

    def init(self, password: str, db_name: str) -> None:
        self._prepare_dir()
        bindir = _bin_dir()
        pwfile = os.path.join(self.path, "pw")
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        os.chown(pwfile, *_owner_ids())
        try:
            _run(
                _as_owner([
                    f"{bindir}/initdb", "-D", self.data, "-U", self.user,
                    f"--pwfile={pwfile}", "--auth-local=trust",
                    "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C",
                    "--no-sync", "--no-instructions",
                ]),
                "initdb",
            )
        finally:
            os.unlink(pwfile)
        self.start()
        if db_name and db_name != "postgres":
            self.sql(f"CREATE DATABASE {quote_ident(db_name)} OWNER {quote_ident(self.user)}")

    def restore(self, archive: str) -> None:
        self._prepare_dir()
        os.makedirs(self.data, mode=0o700, exist_ok=True)
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(self.data, filter="tar")
        for leftover in ("postmaster.pid", "postmaster.opts"):
            if os.path.exists(os.path.join(self.data, leftover)):
                os.unlink(os.path.join(self.data, leftover))
        os.makedirs(os.path.join(self.data, "pg_wal", "archive_status"), exist_ok=True)
        os.chmod(self.data, 0o700)
        _chown_tree(self.path)
        self.start()

    def _write_settings(self) -> None:
        """kit.conf, included from postgresql.conf: where this copy listens."""
        conf = os.path.join(self.data, "postgresql.conf")
        with open(conf, encoding="utf-8") as f:
            included = "include_if_exists = 'kit.conf'" in f.read()
        if not included:
            with open(conf, "a", encoding="utf-8") as f:
                f.write("\ninclude_if_exists = 'kit.conf'\n")
        settings = {
            "port": str(self.port),
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": quote_literal(self.sock),
            "shared_buffers": "'16MB'",
            "max_connections": "40",
            "log_min_error_statement": "panic",
        }
        path = os.path.join(self.data, "kit.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        os.chown(path, *_owner_ids())

    def start(self) -> None:
        self._write_settings()
        _run(
            _as_owner([
                f"{_bin_dir()}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "start",
            ]),
            "pg_ctl start",
        )

    def running(self) -> bool:
        return os.path.exists(os.path.join(self.data, "postmaster.pid"))

    def stop(self, mode: str = "fast") -> None:
        if not self.running():
            return
        _run(
            _as_owner([f"{_bin_dir()}/pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop"]),
            "pg_ctl stop",
        )

    def sql(self, statement: str, db: str = "postgres") -> str:
        return _run(
            [
                f"{_bin_dir()}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse",
                "-h", self.sock,
                "-p", str(self.port), "-U", self.user, "-d", db,
            ],
            "psql",
            stdin="SET log_statement = 'none';\n" + statement + ";\n",
        )

    def backup(self, dest: str) -> None:
        """Writes a startable copy of the cluster to the tar.gz file dest."""
        tmp = tempfile.mkdtemp(dir=os.path.dirname(dest))
        try:
            if self.running():
                _run(
                    [
                        f"{_bin_dir()}/pg_basebackup", "-h", self.sock, "-p", str(self.port),
                        "-U", self.user, "-D", tmp, "-Ft", "-z", "-X", "fetch",
                        "--no-manifest", "-c", "fast",
                    ],
                    "pg_basebackup",
                )
                os.replace(os.path.join(tmp, "base.tar.gz"), dest)
            else:
                with tarfile.open(dest, "w:gz") as tar:
                    tar.add(self.data, arcname=".")
            os.chmod(dest, 0o600)  # holds the password hashes
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def remove(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.path, ignore_errors=True)
            shutil.rmtree(self.sock, ignore_errors=True)
