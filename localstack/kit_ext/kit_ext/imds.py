"""The instance metadata service (IMDSv2 only, as the stack's launch template requires),
as one pure function from a request to a response, so it is tested without sockets.

What an instance asks, and where the answer comes from (`Meta`, filled by the kit from
the EC2 and Auto Scaling records at the time of the request):
- PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (1-21600): a token;
- GET /latest/meta-data/... with X-aws-ec2-metadata-token: instance-id, ami-id,
  instance-type, local-ipv4, local-hostname, hostname, placement/region,
  placement/availability-zone, autoscaling/target-lifecycle-state,
  iam/info and iam/security-credentials/<role>;
- GET /latest/dynamic/instance-identity/document, GET /latest/user-data.
A GET without a valid token is 401, as with HttpTokens=required.
"""

import datetime
import json
import secrets
import time
from dataclasses import dataclass, field

MAX_TTL = 21600


@dataclass
class Meta:
    instance_id: str
    account_id: str
    region: str
    availability_zone: str
    private_ip: str
    hostname: str
    image_id: str
    instance_type: str
    role: str | None
    access_key: str
    user_data: bytes | None
    # "InService", "Terminated", ...; None when the instance is in no Auto Scaling group.
    target_lifecycle_state: str | None = None


@dataclass
class Tokens:
    """Tokens handed out by one instance's IMDS, with their expiry."""

    expiry: dict[str, float] = field(default_factory=dict)

    def issue(self, ttl: int) -> str:
        now = time.monotonic()
        self.expiry = {t: e for t, e in self.expiry.items() if e > now}
        token = secrets.token_urlsafe(32)
        self.expiry[token] = now + ttl
        return token

    def valid(self, token: str | None) -> bool:
        return bool(token) and self.expiry.get(token, 0) > time.monotonic()


Response = tuple[int, str, bytes]  # status, content type, body


def _text(status: int, body: str) -> Response:
    return status, "text/plain", body.encode()


def _credentials(meta: Meta) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    return json.dumps(
        {
            "Code": "Success",
            "LastUpdated": now.isoformat().replace("+00:00", "Z"),
            "Type": "AWS-HMAC",
            # The kit accepts any key; this one names the account the instance lives in.
            "AccessKeyId": meta.access_key,
            "SecretAccessKey": "kit-instance-role",
            "Token": "kit-instance-role-token",
            "Expiration": (now + datetime.timedelta(hours=6)).isoformat().replace("+00:00", "Z"),
        },
        indent=2,
    )


def _meta_data(meta: Meta) -> dict[str, str]:
    items = {
        "ami-id": meta.image_id,
        "hostname": meta.hostname,
        "instance-id": meta.instance_id,
        "instance-type": meta.instance_type,
        "local-hostname": meta.hostname,
        "local-ipv4": meta.private_ip,
        "placement/availability-zone": meta.availability_zone,
        "placement/region": meta.region,
    }
    if meta.target_lifecycle_state is not None:
        items["autoscaling/target-lifecycle-state"] = meta.target_lifecycle_state
    if meta.role:
        items["iam/info"] = json.dumps(
            {
                "Code": "Success",
                "InstanceProfileArn": f"arn:aws:iam::{meta.account_id}:instance-profile/{meta.role}",
                "InstanceProfileId": "AIPAKIT" + meta.instance_id.upper().replace("-", ""),
            }
        )
        items[f"iam/security-credentials/{meta.role}"] = _credentials(meta)
    return items


def _listing(items: dict[str, str], prefix: str) -> str | None:
    """The directory listing of `prefix` (ending in '/'), as IMDS prints it."""
    children = set()
    for key in items:
        if key.startswith(prefix) and key != prefix:
            rest = key[len(prefix):]
            children.add(rest.split("/", 1)[0] + ("/" if "/" in rest else ""))
    return "\n".join(sorted(children)) if children else None


def respond(method: str, path: str, headers: dict[str, str], tokens: Tokens, meta: Meta) -> Response:
    """`headers` has lower-case names."""
    path = path.split("?", 1)[0]
    if path == "/latest/api/token":
        if method != "PUT":
            return _text(405, "Method Not Allowed")
        try:
            ttl = int(headers.get("x-aws-ec2-metadata-token-ttl-seconds", ""))
        except ValueError:
            return _text(400, "Bad Request")
        if not 1 <= ttl <= MAX_TTL:
            return _text(400, "Bad Request")
        return _text(200, tokens.issue(ttl))
    if method not in ("GET", "HEAD"):
        return _text(405, "Method Not Allowed")
    if not tokens.valid(headers.get("x-aws-ec2-metadata-token")):
        return _text(401, "Unauthorized")
    if path in ("/latest", "/latest/"):
        return _text(200, "dynamic\nmeta-data\nuser-data")
    if path == "/latest/user-data":
        if meta.user_data is None:
            return _text(404, "Not Found")
        return 200, "application/octet-stream", meta.user_data
    if path == "/latest/dynamic/instance-identity/document":
        doc = {
            "accountId": meta.account_id,
            "architecture": "x86_64",
            "availabilityZone": meta.availability_zone,
            "imageId": meta.image_id,
            "instanceId": meta.instance_id,
            "instanceType": meta.instance_type,
            "privateIp": meta.private_ip,
            "region": meta.region,
            "version": "2017-09-30",
        }
        return 200, "application/json", json.dumps(doc, indent=2).encode()
    if not path.startswith("/latest/meta-data"):
        return _text(404, "Not Found")
    key = path[len("/latest/meta-data"):].lstrip("/")
    items = _meta_data(meta)
    if key in items and not key.endswith("/"):
        return _text(200, items[key])
    listing = _listing(items, key if key == "" or key.endswith("/") else key + "/")
    if listing is not None:
        return _text(200, listing)
    return _text(404, "Not Found")
