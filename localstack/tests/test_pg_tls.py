"""kit_ext/pg_cluster.py: every RDS cluster serves TLS, as RDS does (the gateway nodes
connect with sslmode=require), plain connections keep working, and a cluster restored
from a snapshot serves TLS too. Runs PostgreSQL directly, without LocalStack.
"""

import os
import secrets
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kit_ext"))

from kit_ext.pg_cluster import Cluster, _owner_ids, free_port  # noqa: E402

SSL_QUERY = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class PgTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # As root PostgreSQL runs as user postgres, which must traverse every parent;
        # mkdtemp makes its directory 0700, so open it (o+x) and keep the kit's layout.
        cls.home = tempfile.mkdtemp(prefix="kit-pg-tls-")
        os.chmod(cls.home, 0o711)
        cls.clusters = os.path.join(cls.home, "rds", "clusters")
        os.makedirs(cls.clusters, mode=0o755)
        cls.tls = os.path.join(cls.home, "rds", "tls")
        cls.user, cls.password = "kong", "pw-" + secrets.token_hex(8)
        cls.running: list[Cluster] = []
        cls.primary = cls.new_cluster("primary")
        cls.primary.init(cls.password, "kong")

    @classmethod
    def tearDownClass(cls):
        for cluster in cls.running:
            cluster.remove()
        shutil.rmtree(cls.home, ignore_errors=True)

    @classmethod
    def new_cluster(cls, name: str) -> Cluster:
        path = os.path.join(cls.clusters, name)
        os.makedirs(path)
        cluster = Cluster(path, free_port(), cls.user)
        cls.running.append(cluster)
        return cluster

    def psql(self, cluster: Cluster, sql: str, **conn: str) -> str:
        """sql over TCP with libpq's conninfo; the password only in the environment."""
        params = {"host": "127.0.0.1", "port": str(cluster.port), "user": self.user, "dbname": "postgres", **conn}
        conninfo = " ".join(f"{k}={v}" for k, v in params.items())
        out = subprocess.run(
            ["psql", conninfo, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
            capture_output=True, text=True, timeout=60, check=False,
            env={**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"},
        )
        self.assertEqual(out.returncode, 0, f"psql {conninfo}: {out.stderr}")
        return out.stdout.strip()

    def test_require_gets_tls(self):
        self.assertEqual(self.psql(self.primary, SSL_QUERY, sslmode="require"), "t")

    def test_plain_still_works(self):
        self.assertEqual(self.psql(self.primary, SSL_QUERY, sslmode="disable"), "f")

    def test_certificate_verifies_for_localhost_and_loopback(self):
        root = os.path.join(self.tls, "server.crt")
        for host in ("localhost", "127.0.0.1"):
            with self.subTest(host=host):
                got = self.psql(self.primary, SSL_QUERY, host=host, sslmode="verify-full", sslrootcert=root)
                self.assertEqual(got, "t")

    def test_key_is_private_to_the_server_user(self):
        st = os.stat(os.path.join(self.tls, "server.key"))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual((st.st_uid, st.st_gid), _owner_ids())
        conf = read(os.path.join(self.primary.data, "kit.conf")).decode()
        self.assertIn("ssl = on", conf)
        self.assertIn(f"ssl_key_file = '{self.tls}/server.key'", conf)

    def test_restored_snapshot_serves_tls(self):
        self.psql(self.primary, "CREATE TABLE IF NOT EXISTS marks (v text); INSERT INTO marks VALUES ('kept')", dbname="kong")
        archive = os.path.join(self.home, "rds", "snap.tar.gz")
        self.primary.backup(archive)
        with tarfile.open(archive) as tar:  # the key stays out of snapshots
            self.assertFalse([n for n in tar.getnames() if n.endswith((".key", ".crt"))])
        restored = self.new_cluster("restored")
        restored.restore(archive)
        self.assertEqual(self.psql(restored, SSL_QUERY, sslmode="require"), "t")
        self.assertEqual(self.psql(restored, "SELECT v FROM marks", dbname="kong", sslmode="require"), "kept")
        self.assertEqual(self.psql(restored, SSL_QUERY, sslmode="disable"), "f")

    def test_second_cluster_shares_the_certificate(self):
        before = read(os.path.join(self.tls, "server.crt"))
        other = self.new_cluster("other")
        other.init(self.password, "postgres")
        self.assertEqual(self.psql(other, SSL_QUERY, sslmode="require"), "t")
        self.assertEqual(read(os.path.join(self.tls, "server.crt")), before)
        other.remove()
        self.assertFalse(os.path.exists(other.path))
        self.assertTrue(os.path.exists(os.path.join(self.tls, "server.key")))  # kept for the others


if __name__ == "__main__":
    unittest.main()
