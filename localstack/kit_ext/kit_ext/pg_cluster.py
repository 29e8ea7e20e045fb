"""One PostgreSQL cluster in its own directory: init, start, stop, backup, restore.

Layout: <dir>/data (PGDATA), <dir>/run (its socket), <dir>/postgres.log. As root, the
server and initdb run as the postgres user. Passwords never reach a command line or a
log: initdb reads a 0600 file that is removed at once, ALTER ROLE goes in on stdin with
statement logging off.

TLS: RDS serves TLS and clients (the gateway nodes) connect with sslmode=require, so every
cluster serves it too, with plain connections still allowed (pg_hba's `host` lines match
both). One self-signed certificate (CN localhost, SAN localhost and 127.0.0.1) is made per
kit home, in <kit home>/rds/tls/ next to clusters/, and each start points the server at it
(kit.conf is rewritten on every start). Keeping it outside the data dirs means snapshots
carry no private key, a restored snapshot serves TLS like any other cluster, and removing
<kit home>/rds (`stop`, `reset`) removes it too.

WAL archiving: RDS restores to any point in time from a base backup plus the transaction
log, so a cluster given an archive_dir archives its WAL there (rds_backups keeps the store).
Segments are 1 MB (initdb --wal-segsize=1) and archive_timeout switches to a new one every
few seconds when anything was written (LOCALSTACK_KIT_ARCHIVE_TIMEOUT, default 5 s), so the
latest restorable time trails the present by seconds and an idle server archives nothing.
The archive command copies to a hidden temp name and renames, so a reader never sees half a
segment, keeps the segment's mtime (when it was last written: every commit before it is in
that segment or an earlier one), and refuses to replace an archived file with other content.
The settings live in kit.conf, rewritten on every start, so a cluster restored from another
one's backup archives into its own store, never into its source's.

recover() is point-in-time recovery: a base backup, restore_command reading the archive,
recovery.signal and recovery_target_time, promoted at the target.
"""

import itertools
import logging
import os
import pwd
import random
import shutil
import socket
import subprocess
import shlex
import tarfile
import tempfile
import threading
import time
from datetime import datetime, timezone

PG_TOOLS = ("initdb", "pg_ctl", "postgres", "pg_basebackup", "psql")
PG_FALLBACK_DIRS = ("/usr/lib/postgresql/15/bin",)
TIMEOUT = 120
TLS_CERT, TLS_KEY = "server.crt", "server.key"
TLS_DAYS = 3650
WAL_SEGMENT_MB = 1
ARCHIVE_TIMEOUT_ENV = "LOCALSTACK_KIT_ARCHIVE_TIMEOUT"
DEFAULT_ARCHIVE_TIMEOUT = 5
# PostgreSQL 13+ ends a targeted recovery with this FATAL when no commit after the target
# is in the archive: all of it is older than the target, and replaying all of it is right.
TARGET_NOT_REACHED = "recovery ended before configured recovery target was reached"

_tls_lock = threading.Lock()
LOG = logging.getLogger(__name__)


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


def own(path: str) -> None:
    """Hands a file or directory (not its contents) to the server's user."""
    os.chown(path, *_owner_ids())


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


# Ports for clusters that cannot have their preferred one: below the kernel's
# ephemeral range (32768 and up), so that no outgoing connection can take one
# between this check and PostgreSQL's bind, as a port the kernel picked could be
# (and below the 20000-32000 the gateway's tests use).
# Handed out in turn from a random start, so two clusters made at once are
# not given the same one.
SPARE_PORTS = range(15000, 20000)
_start = random.randrange(len(SPARE_PORTS))
_spare = itertools.cycle(itertools.chain(SPARE_PORTS[_start:], SPARE_PORTS[:_start]))
_spare_lock = threading.Lock()


def _next_spare() -> int:
    with _spare_lock:
        return next(_spare)


def free_port(preferred: int | None = None) -> int:
    """The preferred loopback port when free, else a free one of SPARE_PORTS."""
    spare = (_next_spare() for _ in SPARE_PORTS)
    for port in itertools.chain([preferred] if preferred else [], spare):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise DataError("no free loopback port")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def archive_timeout() -> int:
    """Seconds between forced WAL switches (LOCALSTACK_KIT_ARCHIVE_TIMEOUT, default 5)."""
    raw = os.environ.get(ARCHIVE_TIMEOUT_ENV, "").strip()
    try:
        value = int(raw) if raw else DEFAULT_ARCHIVE_TIMEOUT
    except ValueError:
        value = DEFAULT_ARCHIVE_TIMEOUT
    return max(1, value)


def _shell_path(path: str) -> str:
    """A directory for a shell command inside archive_command or restore_command, where
    PostgreSQL replaces %-escapes first."""
    return shlex.quote(path).replace("%", "%%")


def archive_command(archive_dir: str) -> str:
    """Copies %p to <archive_dir>/%f atomically (temp name, then rename), keeping its mtime;
    an existing file passes only when its content is the same."""
    d = _shell_path(archive_dir)
    return (
        f'f={d}/%f; if [ -f "$f" ]; then cmp -s %p "$f"; '
        f'else cp -p %p {d}/.%f.tmp && mv -f {d}/.%f.tmp "$f"; fi'
    )


def restore_command(wal_dir: str) -> str:
    """Copies an archived file back; fails quietly (end of the archive) when there is none."""
    d = _shell_path(wal_dir)
    return f"test -f {d}/%f && cp {d}/%f %p"


def recovery_time(target: datetime) -> str:
    """recovery_target_time's value, in UTC with microseconds."""
    if target.tzinfo is None:
        target = target.replace(tzinfo=timezone.utc)
    return target.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f+00")


def _self_signed(cert_path: str, key_path: str) -> None:
    """Writes a self-signed server certificate for localhost and 127.0.0.1 and its key
    (0600). CA:FALSE with serverAuth, so libpq's verify-full and rustls both accept it
    when it is also given as the root certificate."""
    try:
        import datetime
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as e:
        raise DataError(f"cannot make the RDS TLS certificate: the cryptography package is missing ({e})") from e

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=TLS_DAYS))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    os.chmod(cert_path, 0o644)


def ensure_tls(tls_dir: str) -> tuple[str, str]:
    """(certificate, key) paths in tls_dir, made on first use. The directory is filled
    aside and renamed into place, so a server never sees half of a pair. PostgreSQL
    accepts the key only when its own user owns it with mode 0600."""
    cert, key = os.path.join(tls_dir, TLS_CERT), os.path.join(tls_dir, TLS_KEY)
    with _tls_lock:
        if os.path.isfile(cert) and os.path.isfile(key):
            return cert, key
        parent = os.path.dirname(os.path.abspath(tls_dir))
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tls-", dir=parent)
        try:
            _self_signed(os.path.join(tmp, TLS_CERT), os.path.join(tmp, TLS_KEY))
            _chown_tree(tmp)
            shutil.rmtree(tls_dir, ignore_errors=True)  # an incomplete pair left behind
            try:
                os.rename(tmp, tls_dir)
            except OSError as e:  # another process made it meanwhile
                if not (os.path.isfile(cert) and os.path.isfile(key)):
                    raise DataError(f"cannot install the RDS TLS certificate in {tls_dir}: {e}") from e
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return cert, key


class Cluster:
    """One PostgreSQL cluster in its own directory.

    tls_dir holds the TLS certificate and key the server uses; by default <kit home>/rds/tls
    for a cluster in <kit home>/rds/clusters/<id>, i.e. ../../tls from path. archive_dir,
    when given, receives the cluster's WAL (it must be writable by the server's user)."""

    def __init__(
        self, path: str, port: int, user: str, tls_dir: str | None = None, archive_dir: str | None = None
    ):
        self.path, self.port, self.user = path, port, user
        self.archive_dir = archive_dir
        self.tls_dir = tls_dir or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(path))), "tls")
        self.data = os.path.join(path, "data")
        self.sock = os.path.join(path, "run")
        if len(self.sock) > 90:  # a socket path must fit in 107 bytes
            self.sock = tempfile.mkdtemp(prefix="kit-pg-")
        self.log = os.path.join(path, "postgres.log")
        self._log_since = ""  # the server's log during the last recovery attempt

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
                    "--no-sync", "--no-instructions", f"--wal-segsize={WAL_SEGMENT_MB}",
                ]),
                "initdb",
            )
        finally:
            os.unlink(pwfile)
        self.start()
        if db_name and db_name != "postgres":
            self.sql(f"CREATE DATABASE {quote_ident(db_name)} OWNER {quote_ident(self.user)}")

    def _unpack(self, archive: str) -> None:
        """A base backup (or a stopped cluster's files) becomes this cluster's data."""
        self._prepare_dir()
        os.makedirs(self.data, mode=0o700, exist_ok=True)
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(self.data, filter="tar")
        for leftover in ("postmaster.pid", "postmaster.opts", "recovery.signal", "standby.signal"):
            if os.path.exists(os.path.join(self.data, leftover)):
                os.unlink(os.path.join(self.data, leftover))
        os.makedirs(os.path.join(self.data, "pg_wal", "archive_status"), exist_ok=True)
        os.chmod(self.data, 0o700)

    def restore(self, archive: str) -> None:
        self._unpack(archive)
        _chown_tree(self.path)
        self.start()

    def recover(self, archive: str, wal_dir: str, target: datetime | None) -> None:
        """Point-in-time recovery: the base backup `archive`, then the WAL archived in wal_dir
        replayed up to `target` (all of it when None), then promoted to a new timeline.

        When no commit after the target is in the archive, PostgreSQL stops with
        TARGET_NOT_REACHED: everything archived is older than the target, so replaying all
        of it gives the same data, and the recovery runs again without the target."""
        self._unpack(archive)
        with open(os.path.join(self.data, "recovery.signal"), "w", encoding="utf-8"):
            pass
        _chown_tree(self.path)
        recovery = {
            "restore_command": quote_literal(restore_command(wal_dir)),
            "recovery_target_action": "'promote'",
            "recovery_target_timeline": "'latest'",
        }
        if target is not None:
            recovery["recovery_target_time"] = quote_literal(recovery_time(target))
        try:
            self._recover_with(recovery)
        except DataError:
            if target is None or TARGET_NOT_REACHED not in self._log_since:
                raise
            del recovery["recovery_target_time"]
            self._recover_with(recovery)
        # Promoted: PostgreSQL removed recovery.signal; drop the settings too, so no later
        # start reads them.
        self._write_settings()

    def _recover_with(self, recovery: dict) -> None:
        """Starts in recovery and waits until the server is promoted."""
        offset = os.path.getsize(self.log) if os.path.exists(self.log) else 0
        self._log_since = ""
        try:
            self.start(recovery)
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    if self.sql("SELECT pg_is_in_recovery()", tuples=True).strip() == "f":
                        return
                except DataError:
                    if not self.running():
                        raise
                if time.monotonic() > deadline:
                    raise DataError(f"recovery: not promoted after {TIMEOUT}s")
                if not self.running():
                    raise DataError("recovery: the server stopped before it was promoted")
                time.sleep(0.2)
        except DataError as e:
            self._log_since = self._read_log(offset)
            lines = [line for line in self._log_since.splitlines() if "FATAL" in line or "PANIC" in line]
            try:
                self.stop("immediate")
            except DataError as stop_error:
                LOG.warning("%s", stop_error)
            raise DataError(f"{e}{': ' + lines[-1].strip() if lines else ''}") from e

    def _read_log(self, offset: int) -> str:
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                f.seek(offset)
                return f.read()
        except OSError:
            return ""

    def _write_settings(self, recovery: dict | None = None) -> None:
        """kit.conf, included from postgresql.conf: where this copy listens, its TLS, where it
        archives its WAL, and the recovery settings of a point-in-time restore."""
        cert, key = ensure_tls(self.tls_dir)
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
            "ssl": "on",
            "ssl_cert_file": quote_literal(cert),
            "ssl_key_file": quote_literal(key),
            "wal_level": "replica",
        }
        if self.archive_dir:
            settings.update({
                "archive_mode": "on",
                "archive_command": quote_literal(archive_command(self.archive_dir)),
                "archive_timeout": str(archive_timeout()),
            })
        settings.update(recovery or {})
        path = os.path.join(self.data, "kit.conf")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(f"{k} = {v}\n" for k, v in settings.items())
        os.chown(path, *_owner_ids())

    def start(self, recovery: dict | None = None) -> None:
        self._write_settings(recovery)
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

    def sql(self, statement: str, db: str = "postgres", tuples: bool = False) -> str:
        return _run(
            [
                f"{_bin_dir()}/psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=terse",
                *(["-A", "-t"] if tuples else []),
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
