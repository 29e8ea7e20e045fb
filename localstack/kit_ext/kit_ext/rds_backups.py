"""RDS automated backups with real data: a store of base backups and archived WAL per DB
instance, the restore window it gives, and its replication to another region.

AWS keeps an instance's automated backups (daily snapshots plus the transaction log) apart
from the instance, keyed by its DbiResourceId: they outlive a DeleteDBInstance when asked
to ("retained"), and StartDBInstanceAutomatedBackupsReplication copies them to a second
region, where RestoreDBInstanceToPointInTime rebuilds the instance although it never
existed there. moto keeps none of that (its DescribeDBInstanceAutomatedBackups groups
snapshot records), so the kit keeps the records here and the data on disk:

  <kit home>/rds/backups/<account>/<region>/<resource id>/base/<name>.tar.gz, <name>.json
  <kit home>/rds/backups/<account>/<region>/<resource id>/wal/<segment>
  <kit home>/rds/backups/<account>/<dr region>/replicas/<source resource id>/{base,wal}/

A base backup is a pg_basebackup tar (Cluster.backup) with a JSON manifest of its start
and stop times (UTC), written last, so a manifest names a complete tar. WAL comes from
the server's archive_command (pg_cluster). The restore window runs from the first base
backup's stop to the newest archived segment's time (its mtime, kept by the archive
command and by the shipper), or to the newest base backup's stop when that is later.

The shipper of a replica copies new base backups (tar, then manifest) and WAL segments
from the source's store every SHIP_INTERVAL seconds, each to a hidden temp name renamed
into place, with the source's mtimes. While a fault rule takes the source region down
(faults.region_down), it pauses, so a regional outage stops replication as on AWS.
"""

import json
import logging
import os
import re
import secrets
import shutil
import string
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .pg_cluster import Cluster, own

LOG = logging.getLogger(__name__)

SHIP_INTERVAL = 2.0
DEFAULT_REPLICA_RETENTION = 7  # StartDBInstanceAutomatedBackupsReplication's default
WAL_SEGMENT = re.compile(r"^[0-9A-F]{24}$")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(t: datetime) -> datetime:
    """A request's timestamp in UTC (a naive one is taken as UTC, as AWS documents)."""
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def shown(window: tuple[datetime, datetime]) -> tuple[datetime, datetime]:
    """The window as reported: EarliestTime rounded up to a whole second, so a client that
    keeps seconds only (the SDKs' DateTime::from_secs) never picks a time just before it
    (exact while the window is narrower than that). LatestTime stays exact: truncating it
    stays inside, and rounding it down would hide the last commits of an idle instance."""
    earliest, latest = window
    up = earliest.replace(microsecond=0) + (timedelta(seconds=1) if earliest.microsecond else timedelta())
    return (up, latest) if up <= latest else window


def _backup_arn(account: str, region: str) -> str:
    suffix = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(26))
    return f"arn:aws:rds:{region}:{account}:auto-backup:ab-{suffix}"


def _mkdir_owned(path: str) -> None:
    """A directory the server's user can write (archive_command runs as that user)."""
    os.makedirs(path, mode=0o755, exist_ok=True)
    own(path)


class Store:
    """One directory of base backups and archived WAL."""

    def __init__(self, path: str):
        self.path = path
        self.base = os.path.join(path, "base")
        self.wal = os.path.join(path, "wal")

    def create(self) -> "Store":
        for d in (self.path, self.base, self.wal):
            _mkdir_owned(d)
        return self

    def manifests(self) -> list[dict]:
        """The complete base backups, oldest first; each with start, stop (datetimes) and
        the tar's path."""
        found = []
        try:
            names = os.listdir(self.base)
        except FileNotFoundError:
            return []
        for name in names:
            if name.startswith(".") or not name.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.base, name), encoding="utf-8") as f:
                    m = json.load(f)
                archive = os.path.join(self.base, m["archive"])
                found.append({
                    "name": name[: -len(".json")],
                    "start": datetime.fromisoformat(m["start"]),
                    "stop": datetime.fromisoformat(m["stop"]),
                    "archive": archive,
                })
            except (OSError, ValueError, KeyError, TypeError) as e:
                LOG.warning("ignoring base backup manifest %s: %s", os.path.join(self.base, name), e)
        return sorted(found, key=lambda m: m["stop"])

    def wal_time(self) -> datetime | None:
        """When the newest archived segment was last written (its kept mtime)."""
        newest = None
        try:
            with os.scandir(self.wal) as entries:
                for e in entries:
                    if WAL_SEGMENT.match(e.name):
                        mtime = e.stat().st_mtime
                        newest = mtime if newest is None or mtime > newest else newest
        except FileNotFoundError:
            return None
        return datetime.fromtimestamp(newest, timezone.utc) if newest is not None else None

    def window(self) -> tuple[datetime, datetime] | None:
        """(EarliestTime, LatestTime), or None before the first base backup is complete."""
        bases = self.manifests()
        if not bases:
            return None
        earliest = bases[0]["stop"]
        latest = max(bases[-1]["stop"], self.wal_time() or earliest)
        return earliest, latest

    def base_for(self, target: datetime | None) -> dict | None:
        """The newest base backup that stopped at or before target (the newest of all when
        target is None)."""
        bases = [m for m in self.manifests() if target is None or m["stop"] <= target]
        return bases[-1] if bases else None

    def base_backup(self, cluster: Cluster) -> dict:
        """Takes a base backup of a running cluster into base/, manifest last."""
        os.makedirs(self.base, exist_ok=True)
        start = utcnow()
        name = start.strftime("%Y%m%dT%H%M%S%fZ")
        cluster.backup(os.path.join(self.base, f"{name}.tar.gz"))
        stop = utcnow()
        manifest = {"archive": f"{name}.tar.gz", "start": start.isoformat(), "stop": stop.isoformat()}
        tmp = os.path.join(self.base, f".{name}.json.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f)
        os.replace(tmp, os.path.join(self.base, f"{name}.json"))
        return manifest

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


@dataclass
class Source:
    """What a restore needs of the instance whose backups these are, captured from moto's
    record (the instance may be deleted, or live in another region)."""

    account: str
    region: str
    identifier: str
    arn: str
    resource_id: str
    engine: str
    engine_version: str
    instance_class: str
    master_username: str | None
    db_name: str | None
    port: int | None
    allocated_storage: int | None
    storage_type: str | None
    iops: int | None
    encrypted: bool
    kms_key_id: str | None
    retention: int
    license_model: str | None
    iam_auth: bool
    tags: list = field(default_factory=list)
    availability_zone: str | None = None
    create_time: datetime | None = None

    @classmethod
    def of(cls, db) -> "Source":
        """From a moto DBInstance."""
        created = getattr(db, "created", None)
        return cls(
            account=db.account_id,
            region=db.region,
            identifier=db.db_instance_identifier,
            arn=db.db_instance_arn,
            resource_id=db.dbi_resource_id,
            engine=db.engine,
            engine_version=db.engine_version,
            instance_class=db.db_instance_class,
            master_username=db.master_username,
            db_name=db.db_name,
            port=db.port,
            allocated_storage=db.allocated_storage,
            storage_type=db.storage_type,
            iops=db.iops,
            encrypted=bool(db.storage_encrypted),
            kms_key_id=db.kms_key_id,
            retention=int(db.backup_retention_period or 0),
            license_model=db.license_model,
            iam_auth=bool(getattr(db, "enable_iam_database_authentication", False)),
            tags=[dict(t) for t in (db.tags or [])],
            availability_zone=db.availability_zone,
            create_time=as_utc(created) if isinstance(created, datetime) else None,
        )


@dataclass
class AutomatedBackup:
    """An instance's automated backups in one region: its own (active, then retained) or a
    replica of another region's (pending until the first base backup arrives, replicating,
    retained once replication stopped)."""

    source: Source
    store: Store
    region: str
    arn: str
    status: str
    kms_key_id: str | None
    retention: int
    replica: bool = False
    shipper: "Shipper | None" = None

    @property
    def encrypted(self) -> bool:
        return self.source.encrypted or (self.replica and self.kms_key_id is not None)

    def describe(self, replications: list[str] | None = None) -> dict:
        """The DBInstanceAutomatedBackup shape."""
        s = self.source
        out = {
            "DBInstanceArn": s.arn,
            "DbiResourceId": s.resource_id,
            "Region": s.region,
            "DBInstanceIdentifier": s.identifier,
            "AllocatedStorage": s.allocated_storage or 0,
            "Status": self.status,
            "Port": s.port or 0,
            "MasterUsername": s.master_username or "",
            "Engine": s.engine,
            "EngineVersion": s.engine_version,
            "LicenseModel": s.license_model or "",
            "StorageType": s.storage_type or "",
            "Encrypted": self.encrypted,
            "IAMDatabaseAuthenticationEnabled": s.iam_auth,
            "BackupRetentionPeriod": self.retention,
            "DBInstanceAutomatedBackupsArn": self.arn,
            "BackupTarget": "region",
            "TagList": s.tags,
        }
        if self.kms_key_id:
            out["KmsKeyId"] = self.kms_key_id
        if s.iops:
            out["Iops"] = s.iops
        if s.create_time:
            out["InstanceCreateTime"] = s.create_time
        if not self.replica and s.availability_zone:
            out["AvailabilityZone"] = s.availability_zone
        window = self.store.window()
        if window:
            earliest, latest = shown(window)
            out["RestoreWindow"] = {"EarliestTime": earliest, "LatestTime": latest}
        if replications:
            out["DBInstanceAutomatedBackupsReplications"] = [{"DBInstanceAutomatedBackupsArn": a} for a in replications]
        return out


class Shipper:
    """Copies a source store's new base backups and WAL into a replica's store."""

    def __init__(self, source: Store, replica: AutomatedBackup, source_region: str, interval: float = SHIP_INTERVAL):
        self.source, self.replica, self.source_region = source, replica, source_region
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"rds-backup-ship-{replica.source.resource_id}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.ship()
            except Exception as e:  # a store removed meanwhile, a full disk: try again later
                LOG.warning("replicating the backups of %s to %s: %s",
                            self.replica.source.identifier, self.replica.region, e)
            self._stop.wait(self.interval)

    def ship(self, last: bool = False) -> bool:
        """One pass (cut short by stop() unless it is the last); False when the source
        region is down and nothing was read."""
        from .faults import region_down

        if region_down(self.source_region):
            return False
        dst = self.replica.store
        stopping = lambda: self._stop.is_set() and not last  # noqa: E731
        for m in self.source.manifests():
            if stopping():
                return True
            manifest = os.path.basename(m["archive"])[: -len(".tar.gz")] + ".json"
            if os.path.exists(os.path.join(dst.base, manifest)):
                continue
            _copy_into(m["archive"], dst.base)
            _copy_into(os.path.join(self.source.base, manifest), dst.base)
        try:
            names = sorted(os.listdir(self.source.wal))
        except FileNotFoundError:
            names = []
        for name in names:
            if stopping():
                return True
            if not name.startswith(".") and not os.path.exists(os.path.join(dst.wal, name)):
                _copy_into(os.path.join(self.source.wal, name), dst.wal)
        if self.replica.status == "pending" and dst.manifests():
            self.replica.status = "replicating"
        return True


def _copy_into(src: str, dst_dir: str) -> None:
    """src into dst_dir under the same name and mtime, owned by the server's user (its
    restore_command reads WAL), appearing whole or not at all."""
    name = os.path.basename(src)
    tmp = os.path.join(dst_dir, f".{name}.tmp")
    shutil.copy2(src, tmp)
    own(tmp)
    os.replace(tmp, os.path.join(dst_dir, name))


class Backups:
    """Every automated backup of the kit, by (account, region, resource id): the regions'
    own instances' stores, and the replicas held in each region (by the source's id)."""

    def __init__(self, root: str):
        self.root = root
        self._lock = threading.RLock()
        self._own: dict[tuple, AutomatedBackup] = {}
        self._replicas: dict[tuple, AutomatedBackup] = {}

    def open(self, source: Source) -> AutomatedBackup:
        """The store of a new instance (before its server starts, which archives into it)."""
        store = Store(os.path.join(self.root, source.account, source.region, source.resource_id)).create()
        backup = AutomatedBackup(
            source=source, store=store, region=source.region, arn=_backup_arn(source.account, source.region),
            status="active", kms_key_id=source.kms_key_id if source.encrypted else None,
            retention=source.retention,
        )
        with self._lock:
            self._own[(source.account, source.region, source.resource_id)] = backup
        return backup

    def own(self, account: str, region: str, resource_id: str) -> AutomatedBackup | None:
        with self._lock:
            return self._own.get((account, region, resource_id))

    def refresh(self, backup: AutomatedBackup, source: Source) -> None:
        """An active record follows its instance (renamed, retention or tags changed)."""
        backup.source = source
        backup.retention = source.retention
        if source.encrypted:
            backup.kms_key_id = source.kms_key_id

    def instance_deleted(self, account: str, region: str, resource_id: str, keep: bool) -> None:
        """DeleteDBInstance: the store stays as "retained" when keep, else it goes. Either
        way its replicas get what was archived last, stop, and stay as "retained"."""
        with self._lock:
            backup = self._own.get((account, region, resource_id))
            replicas = [r for k, r in self._replicas.items() if k[0] == account and k[2] == resource_id]
        for replica in replicas:
            self._stop_shipping(replica, final=True)
        if backup is None:
            return
        if keep:
            backup.status = "retained"
        else:
            with self._lock:
                self._own.pop((account, region, resource_id), None)
            backup.store.remove()

    def in_region(self, account: str, region: str) -> list[AutomatedBackup]:
        with self._lock:
            own = [b for k, b in self._own.items() if k[:2] == (account, region)]
            replicas = [b for k, b in self._replicas.items() if k[:2] == (account, region)]
        return own + replicas

    def replications_of(self, account: str, resource_id: str) -> list[str]:
        """The ARNs of the replicas of an instance's backups, in every region."""
        with self._lock:
            return [r.arn for k, r in self._replicas.items()
                    if k[0] == account and k[2] == resource_id and r.status in ("pending", "replicating")]

    def replica(self, account: str, region: str, resource_id: str) -> AutomatedBackup | None:
        with self._lock:
            return self._replicas.get((account, region, resource_id))

    def replicas_of(self, account: str, resource_id: str) -> list[AutomatedBackup]:
        with self._lock:
            return [r for k, r in self._replicas.items() if k[0] == account and k[2] == resource_id]

    def replicate(
        self, source_backup: AutomatedBackup, dr_region: str, kms_key_id: str | None, retention: int
    ) -> AutomatedBackup:
        """Starts shipping source_backup's store into dr_region (again, into the same
        replica, when a stopped one is there)."""
        s = source_backup.source
        key = (s.account, dr_region, s.resource_id)
        with self._lock:
            replica = self._replicas.get(key)
            if replica is None:
                store = Store(os.path.join(self.root, s.account, dr_region, "replicas", s.resource_id)).create()
                replica = AutomatedBackup(
                    source=s, store=store, region=dr_region, arn=_backup_arn(s.account, dr_region),
                    status="pending", kms_key_id=kms_key_id, retention=retention, replica=True,
                )
                self._replicas[key] = replica
            else:
                if replica.shipper is not None:
                    replica.shipper.stop()
                replica.source, replica.kms_key_id, replica.retention = s, kms_key_id, retention
                replica.status = "replicating" if replica.store.manifests() else "pending"
            shipper = replica.shipper = Shipper(source_backup.store, replica, s.region)
        # What is there already goes at once (a DescribeDBInstanceAutomatedBackups right
        # after sees a replica that can restore), the rest from the thread.
        try:
            shipper.ship()
        except Exception as e:
            LOG.warning("replicating the backups of %s to %s: %s", s.identifier, dr_region, e)
        shipper.start()
        return replica

    def stop_replication(self, replica: AutomatedBackup) -> None:
        self._stop_shipping(replica, final=False)

    def _stop_shipping(self, replica: AutomatedBackup, final: bool) -> None:
        shipper, replica.shipper = replica.shipper, None
        if shipper is None:
            return
        shipper.stop()
        if final:
            try:
                shipper.ship(last=True)
            except Exception as e:  # the source store may be gone already
                LOG.warning("last copy of the backups of %s to %s: %s", replica.source.identifier, replica.region, e)
        replica.status = "retained"

    def delete(self, backup: AutomatedBackup) -> None:
        """DeleteDBInstanceAutomatedBackup of a retained store or of a replica."""
        if backup.replica:
            self._stop_shipping(backup, final=False)
        with self._lock:
            table = self._replicas if backup.replica else self._own
            key = (backup.source.account, backup.region, backup.source.resource_id)
            if table.get(key) is backup:
                del table[key]
        backup.store.remove()

    def shutdown(self) -> None:
        """Stops every shipper (the files go with <kit home>/rds, see RdsData.shutdown)."""
        with self._lock:
            replicas = list(self._replicas.values())
            self._own.clear()
            self._replicas.clear()
        for replica in replicas:
            if replica.shipper is not None:
                replica.shipper.stop()
                replica.shipper = None
