"""KMS keys for RDS from LocalStack's own KMS (moto's RDS looks in moto's KMS, which
LocalStack does not use): a key id, alias or ARN becomes the key's ARN, and encrypted
storage without a key gets the account's AWS managed key alias/aws/rds, as on AWS."""

DEFAULT_RDS_KEY = "alias/aws/rds"


class KeyNotFound(Exception):
    pass


def key_arn(account: str, region: str, key_id: str | None) -> str:
    from localstack.services.kms.provider import KmsProvider

    if key_id and key_id.startswith("arn:"):
        region = key_id.split(":")[3]
    try:
        key = KmsProvider._get_kms_key(account, region, key_id or DEFAULT_RDS_KEY)
    except Exception as e:  # NotFound, Disabled, PendingDeletion, malformed ids
        raise KeyNotFound(f"{key_id or DEFAULT_RDS_KEY}: {e}") from e
    return key.metadata["Arn"]
