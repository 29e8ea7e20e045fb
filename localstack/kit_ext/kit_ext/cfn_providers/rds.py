"""AWS::RDS::DBSubnetGroup, AWS::RDS::DBParameterGroup and AWS::RDS::DBInstance on the
kit's RDS, whose postgres instances are real PostgreSQL servers.

DBInstance deletion honours the resource's DeletionPolicy as CloudFormation does: the
engine does not pass it to providers, so the provider reads it from the stack's template.
`Snapshot` (AWS's default for a DB instance outside a cluster) deletes with a final
snapshot `<identifier>-final-<time>`; `Delete` skips it; `Retain` leaves the instance."""

from __future__ import annotations

import time

from botocore.exceptions import ClientError

from .base import (
    LOG,
    KitProvider,
    changed,
    failed,
    in_progress,
    plugin,
    schema,
    success,
    tags_list,
    template_attribute,
    to_bool,
    to_int,
)


def _gone(error: ClientError) -> bool:
    code = error.response.get("Error", {}).get("Code", "")
    return code.endswith("NotFound") or code.endswith("NotFoundFault")


class DBSubnetGroupProvider(KitProvider):
    TYPE = "AWS::RDS::DBSubnetGroup"
    SCHEMA = schema(TYPE, "DBSubnetGroupName", ["DBSubnetGroupName", "DBSubnetGroupDescription", "SubnetIds", "Tags"],
                    create_only=["DBSubnetGroupName"])

    def create(self, request):
        model = request.desired_state
        name = (model.get("DBSubnetGroupName") or f"{request.stack_name}-{request.logical_resource_id}").lower()
        request.aws_client_factory.rds.create_db_subnet_group(
            DBSubnetGroupName=name, DBSubnetGroupDescription=model["DBSubnetGroupDescription"],
            SubnetIds=model["SubnetIds"], Tags=tags_list(model))
        model["DBSubnetGroupName"] = name
        return success(model)

    def update(self, request):
        model = {**request.desired_state, "DBSubnetGroupName": request.previous_state["DBSubnetGroupName"]}
        request.aws_client_factory.rds.modify_db_subnet_group(
            DBSubnetGroupName=model["DBSubnetGroupName"], DBSubnetGroupDescription=model["DBSubnetGroupDescription"],
            SubnetIds=model["SubnetIds"])
        return success(model)

    def delete(self, request):
        model = request.previous_state or request.desired_state
        try:
            request.aws_client_factory.rds.delete_db_subnet_group(DBSubnetGroupName=model["DBSubnetGroupName"])
        except ClientError as e:
            if not _gone(e):
                raise
        return success({})


class DBParameterGroupProvider(KitProvider):
    TYPE = "AWS::RDS::DBParameterGroup"
    SCHEMA = schema(TYPE, "DBParameterGroupName", ["DBParameterGroupName", "Description", "Family", "Parameters", "Tags"],
                    create_only=["DBParameterGroupName", "Family", "Description"])

    def _apply(self, rds, name: str, parameters: dict | None):
        if parameters:
            rds.modify_db_parameter_group(DBParameterGroupName=name, Parameters=[
                {"ParameterName": k, "ParameterValue": str(v), "ApplyMethod": "pending-reboot"}
                for k, v in parameters.items()])

    def create(self, request):
        model = request.desired_state
        rds = request.aws_client_factory.rds
        name = (model.get("DBParameterGroupName") or f"{request.stack_name}-{request.logical_resource_id}").lower()
        rds.create_db_parameter_group(DBParameterGroupName=name, DBParameterGroupFamily=model["Family"],
                                      Description=model["Description"], Tags=tags_list(model))
        self._apply(rds, name, model.get("Parameters"))
        model["DBParameterGroupName"] = name
        return success(model)

    def update(self, request):
        model = {**request.desired_state, "DBParameterGroupName": request.previous_state["DBParameterGroupName"]}
        self._apply(request.aws_client_factory.rds, model["DBParameterGroupName"], model.get("Parameters"))
        return success(model)

    def delete(self, request):
        model = request.previous_state or request.desired_state
        try:
            request.aws_client_factory.rds.delete_db_parameter_group(DBParameterGroupName=model["DBParameterGroupName"])
        except ClientError as e:
            if not _gone(e):
                raise
        return success({})


# CloudFormation property -> CreateDBInstance parameter, where the names differ.
_RENAMED = {"VPCSecurityGroups": "VpcSecurityGroupIds"}
_INT = {"AllocatedStorage", "BackupRetentionPeriod", "Port", "Iops", "MonitoringInterval", "MaxAllocatedStorage",
        "StorageThroughput", "PerformanceInsightsRetentionPeriod"}
_BOOL = {"MultiAZ", "StorageEncrypted", "PubliclyAccessible", "CopyTagsToSnapshot", "DeletionProtection",
         "AutoMinorVersionUpgrade", "EnableIAMDatabaseAuthentication", "EnablePerformanceInsights",
         "ManageMasterUserPassword"}
# Not passed to CreateDBInstance (CloudFormation-only, or read-only attributes).
_SKIP = {"Tags", "Endpoint", "DBInstanceArn", "DbiResourceId", "DBSnapshotIdentifier", "SourceDBInstanceIdentifier",
         "MasterUserSecret", "CertificateDetails", "DBSystemId", "AllowMajorVersionUpgrade", "ApplyImmediately"}
# What ModifyDBInstance may change in place.
_MODIFIABLE = ["AllocatedStorage", "BackupRetentionPeriod", "CopyTagsToSnapshot", "DBInstanceClass",
               "DBParameterGroupName", "DeletionProtection", "EngineVersion", "MultiAZ", "PreferredBackupWindow",
               "PreferredMaintenanceWindow", "StorageType", "VPCSecurityGroups", "AutoMinorVersionUpgrade",
               "MasterUserPassword", "PubliclyAccessible", "MonitoringInterval", "MonitoringRoleArn",
               "EnableIAMDatabaseAuthentication", "EnablePerformanceInsights", "EnableCloudwatchLogsExports",
               "MaxAllocatedStorage", "Iops", "StorageThroughput", "CACertificateIdentifier"]


def _params(model: dict, names, modify: bool = False) -> dict:
    out = {}
    for name in names:
        value = model.get(name)
        if value is None or name in _SKIP:
            continue
        if name in _INT:
            value = to_int(value)
        elif name in _BOOL:
            value = to_bool(value)
        if modify and name == "EnableCloudwatchLogsExports":
            out["CloudwatchLogsExportConfiguration"] = {"EnableLogTypes": value}
            continue
        out[_RENAMED.get(name, name)] = value
    return out


class DBInstanceProvider(KitProvider):
    """Ref is the identifier; GetAtt Endpoint.Address, Endpoint.Port, DBInstanceArn,
    DbiResourceId. Create and delete wait for the instance, as CloudFormation does."""

    TYPE = "AWS::RDS::DBInstance"
    SCHEMA = schema(
        TYPE, "DBInstanceIdentifier",
        ["DBInstanceIdentifier", "Engine", "EngineVersion", "DBInstanceClass", "AllocatedStorage", "StorageType",
         "StorageEncrypted", "KmsKeyId", "MultiAZ", "DBSubnetGroupName", "VPCSecurityGroups", "PubliclyAccessible",
         "BackupRetentionPeriod", "CopyTagsToSnapshot", "DeletionProtection", "DBName", "MasterUsername",
         "MasterUserPassword", "ManageMasterUserPassword", "AutoMinorVersionUpgrade", "DBParameterGroupName",
         "PreferredBackupWindow", "PreferredMaintenanceWindow", "Port", "Tags", "EnableIAMDatabaseAuthentication",
         "MonitoringInterval", "MonitoringRoleArn", "EnablePerformanceInsights", "PerformanceInsightsKMSKeyId",
         "PerformanceInsightsRetentionPeriod", "EnableCloudwatchLogsExports", "MaxAllocatedStorage", "Iops",
         "StorageThroughput", "CACertificateIdentifier", "AllowMajorVersionUpgrade",
         "AutomaticBackupReplicationRegion", "AutomaticBackupReplicationKmsKeyId",
         "AutomaticBackupReplicationRetentionPeriod"],
        read_only=["Endpoint", "DBInstanceArn", "DbiResourceId"],
        create_only=["DBInstanceIdentifier", "DBName", "MasterUsername", "KmsKeyId", "StorageEncrypted",
                     "DBSubnetGroupName", "Engine", "Port"],
    )

    def create(self, request):
        model = request.desired_state
        rds = request.aws_client_factory.rds
        ctx = request.custom_context
        if not ctx.get("created"):
            ident = (model.get("DBInstanceIdentifier") or f"{request.stack_name}-{request.logical_resource_id}")[:63].lower()
            model["DBInstanceIdentifier"] = ident
            accepted = rds.meta.service_model.operation_model("CreateDBInstance").input_shape.members
            params = {k: v for k, v in _params(model, model.keys()).items() if k in accepted}
            params["Tags"] = tags_list(model)
            rds.create_db_instance(**params)
            ctx["created"] = True
            return in_progress(model, ctx)
        return self._wait_available(request, model, ctx)

    def _wait_available(self, request, model, ctx):
        rds = request.aws_client_factory.rds
        [db] = rds.describe_db_instances(DBInstanceIdentifier=model["DBInstanceIdentifier"])["DBInstances"]
        status = db.get("DBInstanceStatus")
        if status in ("failed", "incompatible-parameters", "storage-full"):
            return failed(model, f"DB instance {model['DBInstanceIdentifier']} is {status}")
        if status != "available":
            return in_progress(model, ctx)
        if model.get("AutomaticBackupReplicationRegion") and not ctx.get("replicating"):
            _start_replication(request, model, db)
            ctx["replicating"] = True
        model["Endpoint"] = {"Address": db["Endpoint"]["Address"], "Port": str(db["Endpoint"]["Port"])}
        model["DBInstanceArn"] = db["DBInstanceArn"]
        model["DbiResourceId"] = db.get("DbiResourceId")
        return success(model)

    def update(self, request):
        prev = request.previous_state or {}
        model = {**request.desired_state}
        for key in ("DBInstanceIdentifier", "Endpoint", "DBInstanceArn", "DbiResourceId"):
            model[key] = prev.get(key)
        rds = request.aws_client_factory.rds
        ctx = request.custom_context
        if not ctx.get("modified"):
            names = changed(request, *_MODIFIABLE)
            if names:
                params = _params(model, names, modify=True)
                if "VPCSecurityGroups" in names:
                    params["VpcSecurityGroupIds"] = model.get("VPCSecurityGroups") or []
                rds.modify_db_instance(DBInstanceIdentifier=model["DBInstanceIdentifier"], ApplyImmediately=True,
                                       **params)
            if changed(request, "Tags"):
                arn = model["DBInstanceArn"]
                old = {t["Key"] for t in tags_list(prev)} - {t["Key"] for t in tags_list(model)}
                if old:
                    rds.remove_tags_from_resource(ResourceName=arn, TagKeys=sorted(old))
                if tags := tags_list(model):
                    rds.add_tags_to_resource(ResourceName=arn, Tags=tags)
            ctx["modified"] = True
        return self._wait_available(request, model, ctx)

    def delete(self, request):
        model = request.previous_state or request.desired_state
        rds = request.aws_client_factory.rds
        ctx = request.custom_context
        ident = model.get("DBInstanceIdentifier")
        if not ident:
            return success({})
        if not ctx.get("deleting"):
            policy = _deletion_policy(request)
            if policy == "Retain":
                LOG.info("cloudformation: %s retained (DeletionPolicy Retain)", ident)
                return success({})
            params = {"DBInstanceIdentifier": ident}
            if policy == "Delete":
                params["SkipFinalSnapshot"] = True
            else:
                params["FinalDBSnapshotIdentifier"] = f"{ident}-final-{time.strftime('%Y%m%d%H%M%S', time.gmtime())}"
            try:
                rds.delete_db_instance(**params)
            except ClientError as e:
                if _gone(e):
                    return success({})
                return failed(model, f"DeleteDBInstance {ident}: {e}")
            ctx["deleting"] = True
            return in_progress(model, ctx)
        try:
            rds.describe_db_instances(DBInstanceIdentifier=ident)
        except ClientError as e:
            if _gone(e):
                return success({})
            raise
        return in_progress(model, ctx)


def _start_replication(request, model: dict, db: dict) -> None:
    """AutomaticBackupReplicationRegion: the instance's automated backups replicated to
    the DR region (StartDBInstanceAutomatedBackupsReplication, called in that region)."""
    from localstack.aws.connect import connect_to

    region = model["AutomaticBackupReplicationRegion"]
    dr = connect_to(aws_access_key_id=request.account_id, region_name=region).rds
    params = {"SourceDBInstanceArn": db["DBInstanceArn"]}
    if model.get("AutomaticBackupReplicationKmsKeyId"):
        params["KmsKeyId"] = model["AutomaticBackupReplicationKmsKeyId"]
    if model.get("AutomaticBackupReplicationRetentionPeriod"):
        params["BackupRetentionPeriod"] = to_int(model["AutomaticBackupReplicationRetentionPeriod"])
    try:
        dr.start_db_instance_automated_backups_replication(**params)
    except ClientError as e:
        if "AlreadyExists" not in str(e) and "already" not in str(e).lower():
            raise


def _deletion_policy(request) -> str:
    """The resource's DeletionPolicy from the stack's template (Snapshot if none, as on AWS
    for a DB instance outside a cluster)."""
    try:
        policy = template_attribute(request, "DeletionPolicy")
        return policy if policy in ("Delete", "Retain", "Snapshot", "RetainExceptOnCreate") else "Snapshot"
    except Exception as e:  # noqa: BLE001 - the safe default keeps the data
        LOG.warning("cloudformation: cannot read the DeletionPolicy of %s (%s); taking a final snapshot",
                    request.logical_resource_id, e)
        return "Snapshot"


DBSubnetGroupProviderPlugin = plugin(DBSubnetGroupProvider)
DBParameterGroupProviderPlugin = plugin(DBParameterGroupProvider)
DBInstanceProviderPlugin = plugin(DBInstanceProvider)
