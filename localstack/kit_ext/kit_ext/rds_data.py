"""Real PostgreSQL behind RDS: one cluster per DB instance, each on its own loopback port,
and snapshot files, by (account, region, identifier).

Layout under <kit home>/rds: clusters/<id>/ (see pg_cluster) and snapshots/<id>.tar.gz
(a pg_basebackup tar, or a tar of a stopped cluster's files). An instance given an
automated-backup store (rds_backups) archives its WAL there from its first start and takes
its first base backup before it reports available, as AWS backs a new instance up first:
its restore window starts then.
"""

import logging
import os
import shutil
import threading
import uuid

from .pg_cluster import Cluster, DataError, free_port, quote_ident, quote_literal
from .rds_backups import Store

__all__ = ["DataError", "RdsData"]

LOG = logging.getLogger(__name__)


class Instance:
    def __init__(self, cluster: Cluster, status: str):
        self.cluster = cluster
        self.status = status
        self.lock = threading.Lock()


class RdsData:
    """Clusters and snapshot files by (account, region, identifier)."""

    def __init__(self, home: str):
        self.root = os.path.join(home, "rds")
        self.instances: dict[tuple, Instance] = {}
        self.snapshots: dict[tuple, str] = {}

    def _new_cluster(self, user: str, port: int | None, store: Store | None) -> Cluster:
        path = os.path.join(self.root, "clusters", uuid.uuid4().hex[:12])
        os.makedirs(path)
        return Cluster(path, free_port(port), user, archive_dir=store.wal if store else None)

    @staticmethod
    def _first_backup(key: tuple, cluster: Cluster, store: Store | None) -> None:
        """The base backup that opens the restore window. Without it the instance still
        serves; only point-in-time restores from it are refused, so it does not fail."""
        if store is None:
            return
        try:
            store.base_backup(cluster)
        except (DataError, OSError) as e:
            LOG.error("RDS instance %s: first automated backup failed: %s", key[2], e)

    def _in_background(self, key: tuple, inst: Instance, work, ready: str = "available") -> None:
        def run():
            with inst.lock:
                try:
                    work()
                    inst.status = ready
                except Exception as e:  # reported as the instance's status
                    LOG.error("RDS instance %s: %s", key[2], e)
                    inst.status = "failed"

        threading.Thread(target=run, name=f"rds-{key[2]}", daemon=True).start()

    def create(
        self, key: tuple, user: str, password: str, db_name: str, port: int | None, store: Store | None = None
    ) -> None:
        cluster = self._new_cluster(user, port, store)
        inst = self.instances[key] = Instance(cluster, "creating")

        def work():
            cluster.init(password, db_name)
            self._first_backup(key, cluster, store)

        self._in_background(key, inst, work)

    def restore(
        self, key: tuple, snapshot: tuple, user: str, password: str, db_name: str, port: int | None,
        store: Store | None = None,
    ) -> None:
        cluster = self._new_cluster(user, port, store)
        inst = self.instances[key] = Instance(cluster, "creating")
        archive = self.snapshots.get(snapshot)
        if not archive:
            LOG.warning("snapshot %s holds no data: %s starts empty", snapshot[2], key[2])

        def work():
            if archive:
                cluster.restore(archive)
            else:
                cluster.init(password, db_name)
            self._first_backup(key, cluster, store)

        self._in_background(key, inst, work)

    def recover(
        self, key: tuple, user: str, port: int | None, base: str, wal_dir: str, target, store: Store | None
    ) -> None:
        """RestoreDBInstanceToPointInTime: a new cluster from the base backup `base` and the
        WAL in wal_dir up to target (a datetime; None for all of it); the master password
        is the source's, in the data."""
        cluster = self._new_cluster(user, port, store)
        inst = self.instances[key] = Instance(cluster, "creating")

        def work():
            cluster.recover(base, wal_dir, target)
            self._first_backup(key, cluster, store)

        self._in_background(key, inst, work)

    def get(self, key: tuple) -> Instance | None:
        return self.instances.get(key)

    def require_available(self, key: tuple) -> Instance | None:
        inst = self.instances.get(key)
        if inst and inst.status not in ("available", "stopped"):
            raise DataError(f"DB instance {key[2]} is {inst.status}, not available")
        return inst

    def snapshot(self, key: tuple, snap: tuple) -> None:
        inst = self.require_available(key)
        if not inst:
            return
        os.makedirs(os.path.join(self.root, "snapshots"), exist_ok=True)
        dest = os.path.join(self.root, "snapshots", uuid.uuid4().hex[:12] + ".tar.gz")
        with inst.lock:
            inst.cluster.backup(dest)
        self.snapshots[snap] = dest

    def copy_snapshot(self, src: tuple, dst: tuple) -> None:
        archive = self.snapshots.get(src)
        if not archive:
            return
        dest = os.path.join(self.root, "snapshots", uuid.uuid4().hex[:12] + ".tar.gz")
        shutil.copyfile(archive, dest)
        os.chmod(dest, 0o600)
        self.snapshots[dst] = dest

    def delete_snapshot(self, snap: tuple) -> None:
        archive = self.snapshots.pop(snap, None)
        if archive and os.path.exists(archive):
            os.unlink(archive)

    def delete(self, key: tuple) -> None:
        inst = self.instances.pop(key, None)
        if inst:
            with inst.lock:
                inst.cluster.remove()

    def rename(self, old: tuple, new: tuple) -> None:
        if old in self.instances:
            self.instances[new] = self.instances.pop(old)

    def set_password(self, key: tuple, password: str) -> None:
        inst = self.require_available(key)
        if inst and inst.cluster.running():
            with inst.lock:
                c = inst.cluster
                c.sql(f"ALTER ROLE {quote_ident(c.user)} PASSWORD {quote_literal(password)}")

    def stop(self, key: tuple) -> None:
        inst = self.require_available(key)
        if inst:
            with inst.lock:
                inst.cluster.stop()
                inst.status = "stopped"

    def start(self, key: tuple) -> None:
        inst = self.instances.get(key)
        if inst:
            inst.status = "starting"
            self._in_background(key, inst, inst.cluster.start)

    def reboot(self, key: tuple) -> None:
        inst = self.require_available(key)
        if inst:
            inst.status = "rebooting"

            def restart():
                inst.cluster.stop()
                inst.cluster.start()

            self._in_background(key, inst, restart)

    def shutdown(self) -> None:
        """Stops every cluster and removes all data: LocalStack forgets its state too."""
        for inst in list(self.instances.values()):
            try:
                inst.cluster.stop("immediate")
            except DataError as e:
                LOG.warning("%s", e)
        self.instances.clear()
        self.snapshots.clear()
        shutil.rmtree(self.root, ignore_errors=True)
