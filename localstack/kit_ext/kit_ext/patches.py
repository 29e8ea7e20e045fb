"""Patches to moto's models (RDS here, the rest in moto_fixes), applied once when the
first provider loads."""

import json
import secrets
import string

from . import moto_fixes

_applied = False


def _resource_id() -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "db-" + "".join(secrets.choice(alphabet) for _ in range(26))


def _unique_resource_ids() -> None:
    """moto gives every instance the same DbiResourceId; AWS gives each its own."""
    from moto.rds.models import DBInstance

    original_init = DBInstance.__init__

    def init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.dbi_resource_id = _resource_id()

    DBInstance.__init__ = init


def _kms_keys_from_localstack() -> None:
    """moto's RDS checks KMS keys in moto's KMS; LocalStack keeps them in its own."""
    from moto.rds.exceptions import KMSKeyNotAccessibleFault
    from moto.rds.models import RDSBackend

    from .kms_keys import KeyNotFound, key_arn

    def validate_kms_key(self, kms_key_id: str) -> str:
        if kms_key_id.startswith("arn:") and kms_key_id.split(":")[3] != self.region_name:
            raise KMSKeyNotAccessibleFault(kms_key_id)
        try:
            return key_arn(self.account_id, self.region_name, kms_key_id)
        except KeyNotFound as e:
            raise KMSKeyNotAccessibleFault(kms_key_id) from e

    RDSBackend._validate_kms_key = validate_kms_key


def _managed_master_secrets() -> None:
    """ManageMasterUserPassword: moto's secret holds "admin" and one fixed password; AWS's
    holds the master user name and a generated password."""
    from moto.rds.models import MasterUserSecret

    def secret_string(self) -> str:
        try:
            user = self.resource.master_username
        except NotImplementedError:
            user = None
        return json.dumps({"username": user or "admin", "password": secrets.token_urlsafe(24)})

    MasterUserSecret._generate_secret_string = secret_string


def apply() -> None:
    global _applied
    if not _applied:
        _applied = True
        _unique_resource_ids()
        _kms_keys_from_localstack()
        _managed_master_secrets()
        moto_fixes.apply()
