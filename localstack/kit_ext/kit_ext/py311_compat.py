"""LocalStack 4.13 on Python 3.11: the spots that assume Python 3.12, made to work."""

import hashlib
import types
import uuid


def _uuid5(namespace: uuid.UUID, name) -> uuid.UUID:
    """uuid.uuid5 as Python 3.12 has it: the name may also be bytes."""
    if isinstance(name, str):
        name = name.encode("utf-8")
    digest = hashlib.sha1(namespace.bytes + name, usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


def apply() -> None:
    # KMS CreateKey names key material with uuid5(namespace, <bytes>).
    from localstack.services.kms import models

    shim = types.SimpleNamespace(**{k: getattr(uuid, k) for k in dir(uuid) if not k.startswith("__")})
    shim.uuid5 = _uuid5
    models.uuid = shim
