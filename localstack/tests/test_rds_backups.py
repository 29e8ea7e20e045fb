"""RDS automated backups with real data (kit_ext/rds_backups.py): WAL archiving gives a
restore window that trails the present by seconds; RestoreDBInstanceToPointInTime brings
back exactly the rows committed before the restore time; automated backups replicated to
a DR region restore there, where the source never existed, and stop arriving while a fault
rule takes the source region down; a snapshot copied to the DR region with its key
restores the rows it was taken with. Against the started kit, eu-west-1 as the primary
region and us-west-2 as the DR region; everything made here is removed at the end.
"""

import json
import os
import time
import unittest
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

from botocore.exceptions import ClientError

from kit import HOME, client, psql, start, wait

PRIMARY, DR = "eu-west-1", "us-west-2"
USER, PASSWORD, DB = "kong", "Pitr-" + os.urandom(6).hex(), "kong"
# The kit's archive_timeout (5 s) plus the shipper's interval (2 s), with room to spare.
CATCH_UP = 40


def now() -> datetime:
    return datetime.now(timezone.utc)


def faults(endpoint: str, method: str, body: dict | None = None, path: str = "") -> tuple[int, dict]:
    req = urllib.request.Request(
        f"{endpoint}/_kit/faults{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


class RdsBackups(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.endpoint = start()
        cls.rds = client("rds", cls.endpoint, PRIMARY)
        cls.dr = client("rds", cls.endpoint, DR)
        cls.kms = client("kms", cls.endpoint, PRIMARY)
        cls.dr_kms = client("kms", cls.endpoint, DR)
        cls.name = f"kit-bk-{int(time.time() * 1000) % 10**9}"
        cls.instances: list[tuple] = []  # (rds client, identifier)
        cls.snapshots: list[tuple] = []
        cls.keys: list[tuple] = []
        cls.rules: list[int] = []
        cls.addClassCleanup(cls.cleanup)
        cls.key = cls.new_key(cls.kms)
        cls.dr_key = cls.new_key(cls.dr_kms)
        cls.source = cls.create(
            cls.name, StorageEncrypted=True, KmsKeyId=cls.key, Tags=[{"Key": "stack", "Value": cls.name}],
        )
        cls.source_arn = cls.source["DBInstanceArn"]

    @classmethod
    def new_key(cls, kms) -> str:
        arn = kms.create_key(Description="kit rds backup test")["KeyMetadata"]["Arn"]
        cls.keys.append((kms, arn))
        return arn

    @classmethod
    def create(cls, name: str, **extra) -> dict:
        cls.rds.create_db_instance(
            DBInstanceIdentifier=name, Engine="postgres", DBInstanceClass="db.t3.micro", AllocatedStorage=20,
            MasterUsername=USER, MasterUserPassword=PASSWORD, DBName=DB, **extra,
        )
        cls.instances.append((cls.rds, name))
        return cls.available(cls.rds, name)

    @classmethod
    def available(cls, rds, name: str) -> dict:
        def ready():
            inst = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
            assert inst["DBInstanceStatus"] != "failed", f"{name} failed (see the kit's log)"
            return inst if inst["DBInstanceStatus"] == "available" else None

        return wait(f"{name} available", ready, limit=120)

    @classmethod
    def cleanup(cls):
        for rule in cls.rules:
            faults(cls.endpoint, "DELETE", path=f"/{rule}")
        try:
            cls.dr.stop_db_instance_automated_backups_replication(SourceDBInstanceArn=cls.source_arn)
        except (ClientError, AttributeError):
            pass
        for rds, name in cls.instances:
            try:
                rds.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)
            except ClientError:
                pass
        for rds, snap in cls.snapshots:
            try:
                rds.delete_db_snapshot(DBSnapshotIdentifier=snap)
            except ClientError:
                pass
        for rds in (cls.rds, cls.dr):
            for b in rds.describe_db_instance_automated_backups()["DBInstanceAutomatedBackups"]:
                if b["DBInstanceIdentifier"].startswith(cls.name) and b["Status"] != "active":
                    rds.delete_db_instance_automated_backup(DBInstanceAutomatedBackupsArn=b["DBInstanceAutomatedBackupsArn"])
        for kms, arn in cls.keys:
            try:
                kms.enable_key(KeyId=arn)
                kms.schedule_key_deletion(KeyId=arn, PendingWindowInDays=7)
            except ClientError:
                pass

    # --- helpers ------------------------------------------------------------------------

    def sql(self, inst: dict, statement: str, password: str = PASSWORD) -> str:
        return psql(inst["Endpoint"]["Address"], inst["Endpoint"]["Port"], USER, password, DB, statement)

    def ids(self, inst: dict, table: str) -> list[int]:
        out = self.sql(inst, f"SELECT coalesce(string_agg(id::text, ',' ORDER BY id), '') FROM {table}")
        return [int(i) for i in out.split(",") if i]

    def backup(self, rds, **by) -> dict:
        found = rds.describe_db_instance_automated_backups(**by)["DBInstanceAutomatedBackups"]
        self.assertEqual(len(found), 1, found)
        return found[0]

    def latest(self, rds, **by):
        window = self.backup(rds, **by).get("RestoreWindow")
        return window["LatestTime"] if window else None

    def wait_latest_after(self, rds, moment: datetime, **by) -> datetime:
        return wait(f"LatestTime after {moment}", lambda: (t := self.latest(rds, **by)) and t > moment and t,
                    limit=CATCH_UP)

    def restore(self, rds, target: str, **kwargs) -> dict:
        answer = rds.restore_db_instance_to_point_in_time(TargetDBInstanceIdentifier=target, **kwargs)["DBInstance"]
        self.instances.append((rds, target))
        self.assertEqual(answer["DBInstanceStatus"], "creating")
        return self.available(rds, target)

    def error(self, call, **kwargs) -> tuple[str, str]:
        with self.assertRaises(ClientError) as raised:
            call(**kwargs)
        err = raised.exception.response["Error"]
        return err["Code"], err.get("Message", "")

    # --- tests --------------------------------------------------------------------------

    def test_point_in_time_restore_brings_back_the_rows_before_the_time(self):
        src = self.source
        self.sql(src, "CREATE TABLE pitr (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp()); "
                      "INSERT INTO pitr (id) VALUES (1), (2), (3)")
        time.sleep(1)
        restore_time = now()
        time.sleep(1)
        self.sql(src, "INSERT INTO pitr (id) VALUES (4), (5)")
        written = now()
        mine = self.backup(self.rds, DBInstanceIdentifier=self.name)
        self.assertEqual((mine["Status"], mine["DbiResourceId"], mine["Region"], mine["Encrypted"], mine["KmsKeyId"]),
                         ("active", src["DbiResourceId"], PRIMARY, True, self.key))
        self.assertRegex(mine["DBInstanceAutomatedBackupsArn"], rf"^arn:aws:rds:{PRIMARY}:\d{{12}}:auto-backup:ab-[a-z0-9]{{26}}$")
        latest = self.wait_latest_after(self.rds, written, DBInstanceIdentifier=self.name)
        self.assertLess(latest, now() + timedelta(seconds=1))
        described = self.rds.describe_db_instances(DBInstanceIdentifier=self.name)["DBInstances"][0]
        self.assertGreaterEqual(described["LatestRestorableTime"], latest)

        at_time = self.restore(self.rds, f"{self.name}-at", SourceDBInstanceIdentifier=self.name, RestoreTime=restore_time)
        self.assertEqual(self.ids(at_time, "pitr"), [1, 2, 3])
        self.assertEqual((at_time["KmsKeyId"], at_time["StorageEncrypted"], at_time["MultiAZ"]), (self.key, True, False))
        self.assertNotEqual(at_time["DbiResourceId"], src["DbiResourceId"])
        newest = self.restore(self.rds, f"{self.name}-latest", SourceDbiResourceId=src["DbiResourceId"],
                              UseLatestRestorableTime=True)
        self.assertEqual(self.ids(newest, "pitr"), [1, 2, 3, 4, 5])
        # The restored instance is an instance of its own: writable, with its own backups.
        self.sql(newest, "INSERT INTO pitr (id) VALUES (6)")
        self.assertEqual(self.backup(self.rds, DbiResourceId=newest["DbiResourceId"])["Status"], "active")

    def test_restore_time_outside_the_window_and_bad_combinations_are_refused(self):
        window = self.backup(self.rds, DBInstanceIdentifier=self.name)["RestoreWindow"]
        for moment in (window["EarliestTime"] - timedelta(hours=1), now() + timedelta(hours=1)):
            code, message = self.error(self.rds.restore_db_instance_to_point_in_time, SourceDBInstanceIdentifier=self.name,
                                       TargetDBInstanceIdentifier=f"{self.name}-never", RestoreTime=moment)
            self.assertEqual(code, "InvalidRestoreFault", message)
            self.assertIn("restorable window", message)
        code, _ = self.error(self.rds.restore_db_instance_to_point_in_time, SourceDBInstanceIdentifier=self.name,
                             TargetDBInstanceIdentifier=f"{self.name}-never", RestoreTime=now(),
                             UseLatestRestorableTime=True)
        self.assertEqual(code, "InvalidParameterCombination")
        code, _ = self.error(self.rds.restore_db_instance_to_point_in_time, SourceDBInstanceIdentifier=f"{self.name}-nope",
                             TargetDBInstanceIdentifier=f"{self.name}-never", UseLatestRestorableTime=True)
        self.assertEqual(code, "DBInstanceNotFound")
        code, _ = self.error(self.rds.describe_db_instance_automated_backups, DbiResourceId="db-NOSUCHRESOURCEID0000000000")
        self.assertEqual(code, "DBInstanceAutomatedBackupNotFound")
        self.assertEqual([], self.rds.describe_db_instances(DBInstanceIdentifier=self.name)["DBInstances"][0]
                         .get("ReadReplicaDBInstanceIdentifiers", []))

    def test_replication_errors(self):
        start_replication = self.dr.start_db_instance_automated_backups_replication
        missing = self.dr_key.rsplit("/", 1)[0] + "/00000000-0000-0000-0000-000000000000"
        code, message = self.error(start_replication, SourceDBInstanceArn=self.source_arn, KmsKeyId=missing)
        self.assertEqual(code, "KMSKeyNotAccessibleFault")
        self.assertIn(missing, message)
        code, message = self.error(start_replication, SourceDBInstanceArn=self.source_arn)
        self.assertEqual(code, "KMSKeyNotAccessibleFault", message)
        disabled = self.new_key(self.dr_kms)
        self.dr_kms.disable_key(KeyId=disabled)
        code, message = self.error(start_replication, SourceDBInstanceArn=self.source_arn, KmsKeyId=disabled)
        self.assertEqual(code, "KMSKeyNotAccessibleFault")
        self.assertIn(disabled, message)
        code, _ = self.error(start_replication, SourceDBInstanceArn=self.source_arn.replace(self.name, f"{self.name}-nope"),
                             KmsKeyId=self.dr_key)
        self.assertEqual(code, "DBInstanceNotFound")
        code, _ = self.error(self.rds.start_db_instance_automated_backups_replication,
                             SourceDBInstanceArn=self.source_arn, KmsKeyId=self.key)
        self.assertEqual(code, "InvalidParameterValue")
        code, _ = self.error(self.dr.stop_db_instance_automated_backups_replication,
                             SourceDBInstanceArn=self.source_arn.replace(self.name, f"{self.name}-nope"))
        self.assertEqual(code, "DBInstanceNotFound")

    def test_replicated_backups_restore_in_the_dr_region_and_pause_while_the_source_region_is_down(self):
        src = self.source
        self.sql(src, "CREATE TABLE repl (id int PRIMARY KEY); INSERT INTO repl VALUES (1), (2)")
        started = self.dr.start_db_instance_automated_backups_replication(
            SourceDBInstanceArn=self.source_arn, KmsKeyId=self.dr_key, BackupRetentionPeriod=3,
        )["DBInstanceAutomatedBackup"]
        arn = started["DBInstanceAutomatedBackupsArn"]
        self.assertRegex(arn, rf"^arn:aws:rds:{DR}:\d{{12}}:auto-backup:ab-[a-z0-9]{{26}}$")
        self.assertEqual((started["DBInstanceArn"], started["Region"], started["KmsKeyId"], started["BackupRetentionPeriod"]),
                         (self.source_arn, PRIMARY, self.dr_key, 3))
        code, _ = self.error(self.dr.start_db_instance_automated_backups_replication,
                             SourceDBInstanceArn=self.source_arn, KmsKeyId=self.dr_key)
        self.assertEqual(code, "InvalidDBInstanceAutomatedBackupState")
        written = now()
        wait("replicating", lambda: self.backup(self.dr, DBInstanceAutomatedBackupsArn=arn)["Status"] == "replicating",
             limit=CATCH_UP)
        self.wait_latest_after(self.dr, written, DbiResourceId=src["DbiResourceId"])
        primary = self.backup(self.rds, DBInstanceIdentifier=self.name)
        self.assertEqual(primary["DBInstanceAutomatedBackupsReplications"], [{"DBInstanceAutomatedBackupsArn": arn}])
        self.assertEqual(self.rds.describe_db_instances(DBInstanceIdentifier=self.name)["DBInstances"][0]
                         ["DBInstanceAutomatedBackupsReplications"], [{"DBInstanceAutomatedBackupsArn": arn}])

        # The primary region goes down: its API fails, the DR region's works, and nothing
        # more reaches the replica although the source keeps archiving.
        status, rule = faults(self.endpoint, "POST", {
            "region": PRIMARY, "error": "ServiceUnavailable", "status": 503, "count": 1000000})
        self.assertEqual(status, 201, rule)
        self.rules.append(rule["id"])
        try:
            code, _ = self.error(self.rds.describe_db_instances, DBInstanceIdentifier=self.name)
            self.assertEqual(code, "ServiceUnavailable")
            self.dr.describe_db_instance_automated_backups(DBInstanceAutomatedBackupsArn=arn)
            time.sleep(3)  # a pass of the shipper that began before the rule ends
            frozen = self.latest(self.dr, DBInstanceAutomatedBackupsArn=arn)
            self.sql(src, "INSERT INTO repl VALUES (3), (4)")
            during = now()
            wal = os.path.join(HOME, "rds", "backups", src["DBInstanceArn"].split(":")[4], PRIMARY, src["DbiResourceId"], "wal")
            wait("the source archives the outage's rows", lambda: max(
                (os.stat(os.path.join(wal, f)).st_mtime for f in os.listdir(wal) if not f.startswith(".") and len(f) == 24),
                default=0) > during.timestamp(), limit=CATCH_UP)
            time.sleep(3)
            self.assertEqual(self.latest(self.dr, DBInstanceAutomatedBackupsArn=arn), frozen)
        finally:
            faults(self.endpoint, "DELETE", path=f"/{rule['id']}")
        self.wait_latest_after(self.dr, during, DBInstanceAutomatedBackupsArn=arn)

        restored = self.restore(self.dr, f"{self.name}-dr", SourceDBInstanceAutomatedBackupsArn=arn,
                                UseLatestRestorableTime=True)
        self.assertEqual(self.ids(restored, "repl"), [1, 2, 3, 4])
        self.assertEqual((restored["StorageEncrypted"], restored["KmsKeyId"], restored["AvailabilityZone"]),
                         (True, self.dr_key, f"{DR}a"))
        self.assertEqual((restored["Engine"], restored["MasterUsername"], restored["DBInstanceClass"], restored["MultiAZ"]),
                         ("postgres", USER, "db.t3.micro", False))
        self.assertEqual(restored["TagList"], [{"Key": "stack", "Value": self.name}])
        self.assertTrue(restored["DBInstanceArn"].startswith(f"arn:aws:rds:{DR}:"))

        stopped = self.dr.stop_db_instance_automated_backups_replication(SourceDBInstanceArn=self.source_arn)
        self.assertEqual(stopped["DBInstanceAutomatedBackup"]["DBInstanceAutomatedBackupsArn"], arn)
        self.assertEqual(self.backup(self.dr, DBInstanceAutomatedBackupsArn=arn)["Status"], "retained")
        self.assertNotIn("DBInstanceAutomatedBackupsReplications", self.backup(self.rds, DBInstanceIdentifier=self.name))
        deleted = self.dr.delete_db_instance_automated_backup(DBInstanceAutomatedBackupsArn=arn)
        self.assertEqual(deleted["DBInstanceAutomatedBackup"]["Status"], "deleting")
        code, _ = self.error(self.dr.describe_db_instance_automated_backups, DBInstanceAutomatedBackupsArn=arn)
        self.assertEqual(code, "DBInstanceAutomatedBackupNotFound")

    def test_retained_backups_outlive_their_instance(self):
        name = f"{self.name}-ret"
        inst = self.create(name)
        self.sql(inst, "CREATE TABLE ret (id int); INSERT INTO ret VALUES (7)")
        written = now()
        self.wait_latest_after(self.rds, written, DBInstanceIdentifier=name)
        code, _ = self.error(self.rds.delete_db_instance_automated_backup, DbiResourceId=inst["DbiResourceId"])
        self.assertEqual(code, "InvalidDBInstanceAutomatedBackupState")
        self.rds.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True, DeleteAutomatedBackups=False)
        kept = self.backup(self.rds, DbiResourceId=inst["DbiResourceId"])
        self.assertEqual((kept["Status"], kept["DBInstanceIdentifier"], kept["Encrypted"]), ("retained", name, False))
        back = self.restore(self.rds, f"{name}-back", SourceDbiResourceId=inst["DbiResourceId"], UseLatestRestorableTime=True)
        self.assertEqual(self.ids(back, "ret"), [7])
        self.rds.delete_db_instance_automated_backup(DbiResourceId=inst["DbiResourceId"])
        code, _ = self.error(self.rds.describe_db_instance_automated_backups, DbiResourceId=inst["DbiResourceId"])
        self.assertEqual(code, "DBInstanceAutomatedBackupNotFound")

    def test_snapshot_copied_to_the_dr_region_restores_its_rows(self):
        src = self.source
        self.sql(src, "CREATE TABLE snap (id int PRIMARY KEY); INSERT INTO snap VALUES (10), (11)")
        snap = f"{self.name}-snap"
        created = self.rds.create_db_snapshot(DBInstanceIdentifier=self.name, DBSnapshotIdentifier=snap,
                                              Tags=[{"Key": "purpose", "Value": "dr"}])["DBSnapshot"]
        self.snapshots.append((self.rds, snap))
        self.sql(src, "INSERT INTO snap VALUES (12)")  # after the snapshot: not in the copy
        copy_id = f"{self.name}-copy"
        code, message = self.error(self.dr.copy_db_snapshot, SourceDBSnapshotIdentifier=created["DBSnapshotArn"],
                                   TargetDBSnapshotIdentifier=copy_id)
        self.assertEqual(code, "InvalidParameterValue")
        self.assertIn("KmsKeyId", message)
        copied = self.dr.copy_db_snapshot(SourceDBSnapshotIdentifier=created["DBSnapshotArn"], TargetDBSnapshotIdentifier=copy_id,
                                          KmsKeyId=self.dr_key, CopyTags=True)["DBSnapshot"]
        self.snapshots.append((self.dr, copy_id))
        for view in (copied, self.dr.describe_db_snapshots(DBSnapshotIdentifier=copy_id)["DBSnapshots"][0]):
            self.assertEqual((view["Encrypted"], view["KmsKeyId"], view["SnapshotType"]), (True, self.dr_key, "manual"))
            self.assertEqual((view["SourceRegion"], view["SourceDBSnapshotIdentifier"]), (PRIMARY, created["DBSnapshotArn"]))
            self.assertTrue(view["DBSnapshotArn"].startswith(f"arn:aws:rds:{DR}:"))
        self.assertEqual(copied["TagList"], [{"Key": "purpose", "Value": "dr"}])
        target = f"{self.name}-fromcopy"
        self.dr.restore_db_instance_from_db_snapshot(DBInstanceIdentifier=target, DBSnapshotIdentifier=copy_id)
        self.instances.append((self.dr, target))
        restored = self.available(self.dr, target)
        self.assertEqual(self.ids(restored, "snap"), [10, 11])
        self.assertEqual(restored["KmsKeyId"], self.dr_key)


if __name__ == "__main__":
    unittest.main()
