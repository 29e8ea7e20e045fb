"""Fault injection, like LocalStack Pro's chaos API: `/_kit/faults` rules make matching AWS
requests fail with an AWS error (e.g. throttling), so tests can prove a client retries.

A rule with a `region` and no `service` is a regional outage: every AWS call signed for that
region fails, and the kit's own cross-region work that reads from that region (the RDS
backup replication shipper, see rds_backups) pauses while it lasts, as it would on AWS.
Its error stays `Throttling` unless the rule says otherwise; an outage reads best as e.g.
{"region": "eu-west-1", "error": "ServiceUnavailable", "status": 503, "count": 1000000}.
"""

import threading
from dataclasses import asdict, dataclass

from localstack.aws.api import CommonServiceException, RequestContext
from localstack.runtime import hooks
from localstack.utils.aws.request_context import extract_access_key_id_from_auth_header


@dataclass
class Rule:
    id: int
    service: str | None
    operation: str | None
    region: str | None
    access_key: str | None
    error: str
    message: str
    status: int
    count: int
    hits: int = 0

    @property
    def remaining(self) -> int:
        return self.count - self.hits

    def matches(self, service: str, operation: str, region: str | None, access_key: str | None) -> bool:
        return (
            self.remaining > 0
            and self.service in (None, service)
            and self.operation in (None, operation)
            and self.region in (None, region)
            and self.access_key in (None, access_key)
        )

    @property
    def is_outage(self) -> bool:
        """Every call of a region fails, whoever makes it."""
        return self.service is None and self.operation is None and self.access_key is None and self.region is not None

    def to_json(self) -> dict:
        return {**asdict(self), "remaining": self.remaining}


class Faults:
    """The rules, and the request handler that applies them (thread-safe)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        self._next_id = 1

    def add(self, spec: dict) -> Rule:
        """Appends a rule from its JSON form; ValueError names a bad field."""
        if not isinstance(spec, dict):
            raise ValueError("the body must be a JSON object")
        unknown = set(spec) - {"service", "operation", "region", "access_key", "error", "message", "status", "count"}
        if unknown:
            raise ValueError(f"unknown fields: {', '.join(sorted(unknown))}")

        def text(name: str, default: str | None = None) -> str | None:
            value = spec.get(name, default)
            if value is None:
                return None
            if not isinstance(value, str) or not value:
                raise ValueError(f"'{name}' must be a non-empty string")
            return value

        def number(name: str, default: int, low: int, high: int) -> int:
            value = spec.get(name, default)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"'{name}' must be an integer from {low} to {high}")
            return value

        service, region = text("service"), text("region")
        if service is None and region is None:
            raise ValueError("a rule needs a 'service', a 'region' (a regional outage), or both")
        with self._lock:
            rule = Rule(
                id=self._next_id,
                service=service,
                operation=text("operation"),
                region=region,
                access_key=text("access_key"),
                error=text("error", "Throttling"),
                message=text("message", "Rate exceeded"),
                status=number("status", 400, 400, 599),
                count=number("count", 1, 1, 1_000_000),
            )
            self._next_id += 1
            self._rules.append(rule)
            return rule

    def rules(self) -> list[dict]:
        with self._lock:
            return [r.to_json() for r in self._rules]

    def remove(self, rule_id: int | None = None) -> int:
        """Removes rule `rule_id`, or every rule; returns how many went."""
        with self._lock:
            before = len(self._rules)
            self._rules = [r for r in self._rules if rule_id is not None and r.id != rule_id]
            return before - len(self._rules)

    def region_down(self, region: str) -> bool:
        """An outage rule for `region` has requests left to fail."""
        with self._lock:
            return any(r.is_outage and r.region == region and r.remaining > 0 for r in self._rules)

    def __call__(self, _chain, context: RequestContext, _response):
        """Request handler, after the request is parsed: raises the first matching rule's error."""
        if not self._rules or not context.service or not context.operation or context.is_internal_call:
            return
        access_key = extract_access_key_id_from_auth_header(context.request.headers)
        with self._lock:
            rule = next(
                (r for r in self._rules
                 if r.matches(context.service.service_name, context.operation.name, context.region, access_key)),
                None,
            )
            if rule is None:
                return
            rule.hits += 1
        # The chain's exception handlers serialize it in the service's protocol.
        raise CommonServiceException(rule.error, rule.message, status_code=rule.status, sender_fault=True)


FAULTS = Faults()


def region_down(region: str) -> bool:
    """The kit's own cross-region work (backup replication) pauses while this is true."""
    return FAULTS.region_down(region)


@hooks.on_infra_start()
def register_faults():
    """POST/GET/DELETE /_kit/faults, and the handler in the AWS request chain."""
    from localstack.aws import handlers
    from localstack.http import Response
    from localstack.services.edge import ROUTER

    def add(request):
        try:
            rule = FAULTS.add(request.get_json(force=True, silent=True))
        except ValueError as e:
            return Response.for_json({"error": str(e)}, status=400)
        return Response.for_json(rule.to_json(), status=201)

    def list_rules(_request):
        return Response.for_json({"rules": FAULTS.rules()})

    def clear(_request):
        return Response.for_json({"removed": FAULTS.remove()})

    def remove(_request, rule_id: int):
        removed = FAULTS.remove(rule_id)
        return Response.for_json({"removed": removed}, status=200 if removed else 404)

    ROUTER.add("/_kit/faults", add, methods=["POST"])
    ROUTER.add("/_kit/faults", list_rules, methods=["GET"])
    ROUTER.add("/_kit/faults", clear, methods=["DELETE"])
    ROUTER.add("/_kit/faults/<int:rule_id>", remove, methods=["DELETE"])
    handlers.serve_custom_service_request_handlers.append(FAULTS)
