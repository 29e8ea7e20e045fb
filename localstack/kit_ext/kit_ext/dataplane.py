"""The kit's data plane: moto's EC2, ELB and Auto Scaling records made real.

One controller thread reconciles, every second and at once after a relevant API call:
- instances (instances.py): boot what runs with bootable user data, shut down what was
  stopped or terminated, notice instances whose init died;
- Auto Scaling (lifecycle.py): lifecycle actions past their heartbeat, replacement of
  instances the ELB finds unhealthy, IMDS's target lifecycle state;
- classic ELBs (balancers.py): one HAProxy per ELB, with the registered instances that
  run, the listeners, PROXY protocol ports, health check and draining of the record;
- the RDS ports every instance can reach (instance_net.py);
- Route53 names (dns_server.py) resolve to the ELBs' local addresses.

Reading moto's dicts while request threads change them can race; the controller copies
before iterating and retries on the next tick.
"""

import logging
import os
import random
import threading
import time

from . import balancers as lb
from . import netns
from .dns_server import KitDns, route53_records
from .instances import Instances, Launch, bootable, user_data_bytes
from .lifecycle import Lifecycle, patch as patch_lifecycle

LOG = logging.getLogger("kit.dataplane")
STACK_TAG = "gateway-kit:stack"
PROXY_POLICY_TYPE = "ProxyProtocolPolicyType"
TICK = 1.0


def _tags(inst) -> dict[str, str]:
    return dict(inst.ec2_backend.tags.get(inst.id, {}))


def _ci(d: dict, key: str, default=None):
    """A moto attribute dict read case-insensitively (its keys come from requests)."""
    for k, v in (d or {}).items():
        if k.lower() == key.lower():
            return v
    return default


def draining_timeout(elb) -> int | None:
    """A classic ELB's ConnectionDraining timeout (s), None when draining is off."""
    draining = elb.attributes.get("connection_draining") or {}
    return int(_ci(draining, "timeout", 300)) if _flag(_ci(draining, "enabled", False)) else None


def group_draining_seconds(group) -> int:
    """The longest draining timeout of an Auto Scaling group's classic ELBs (0 when none
    drains): how long a terminating instance stays `Terminating` before its hook."""
    elbs = group.autoscaling_backend.elb_backend.load_balancers
    return max([draining_timeout(elbs[n]) or 0 for n in group.load_balancer_names or [] if n in elbs], default=0)


def elb_key(account_id: str, region: str, name: str) -> str:
    """How the data plane names an ELB to balancers.py."""
    return f"{account_id}/{region}/{name}"


def _flag(value) -> bool:
    return value is True or str(value).lower() == "true"


class DataPlane:
    def __init__(self, home: str, kit_port: int, dns_port: int):
        self.instances = Instances(home, kit_port)
        self.balancers = lb.Balancers(home)
        self.lifecycle = Lifecycle(on_change=self.wake, draining_seconds=group_draining_seconds)
        self.dns = KitDns(dns_port, route53_records, self.balancer_address)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._dns_names: dict[str, str] = {}  # ELB DNS name -> balancer key
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="kit-dataplane", daemon=True)

    def start(self) -> None:
        patch_lifecycle(self.lifecycle)
        _patch_moto(self)
        try:
            self.dns.start()
        except OSError as e:
            LOG.error("the kit's DNS server could not start on 127.0.0.1:%s: %s", self.dns.address[1], e)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(15)
        self.instances.shutdown_all()
        self.balancers.stop_all()
        self.dns.stop()
        for ns in list(netns.created_vpcs):
            netns.delete(ns)
            netns.created_vpcs.discard(ns)

    # --- the loop ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self.reconcile()
            except RuntimeError as e:  # a dict changed while it was read
                LOG.debug("reconcile raced with a request (%s); again next tick", e)
            except Exception:
                LOG.exception("reconcile failed; again next tick")

    def reconcile(self) -> None:
        self._instances()
        self._autoscaling()
        converging = time.monotonic()
        self._balancers()
        # After the balancers: a terminating instance is deregistered before the hook's
        # wait starts (and IMDS says Terminated), as on AWS.
        self.lifecycle.advance(converging)
        self._rds_ports()
        self._gc_vpcs()

    def _instances(self) -> None:
        from moto.ec2.models import ec2_backends

        seen = {}
        for account_id, regions in list(ec2_backends.items()):
            for region, backend in list(regions.items()):
                for reservation in list(backend.reservations.values()):
                    for inst in list(reservation.instances):
                        seen[inst.id] = (account_id, region, backend, inst)
        self.instances.check()
        for instance_id, (account_id, region, backend, inst) in seen.items():
            state = inst._state.name
            booted = self.instances.get(instance_id)
            if state == "running" and booted is None:
                launch = self._launch(account_id, region, backend, inst)
                if launch is not None:
                    self.instances.boot(launch)
            elif state in ("terminated", "shutting-down") and booted is not None:
                self.instances.terminate(instance_id)
            elif state in ("stopped", "stopping") and booted is not None:
                self.instances.stop(instance_id)
        for b in self.instances.listing():
            if b["instance_id"] not in seen:  # the kit was reset under it
                self.instances.terminate(b["instance_id"])

    def _launch(self, account_id: str, region: str, backend, inst) -> Launch | None:
        data = user_data_bytes(inst.user_data)
        if not bootable(data) or not inst.subnet_id:
            return None
        if getattr(inst, "_kit_unbootable", False):
            return None
        try:
            vpc = backend.get_vpc(inst.vpc_id)
            tags = _tags(inst)
            return Launch(
                instance_id=inst.id,
                account_id=account_id,
                region=region,
                availability_zone=inst.placement,
                vpc_id=inst.vpc_id,
                vpc_cidr=vpc.cidr_block,
                private_ip=inst.private_ip,
                user_data=data,
                image_id=inst.image_id or "",
                instance_type=inst.instance_type,
                role=_role(account_id, backend, inst, tags),
                stack=tags.get(STACK_TAG),
            )
        except Exception as e:
            LOG.warning("instance %s cannot boot on the kit: %s", inst.id, e)
            inst._kit_unbootable = True
            return None

    def _autoscaling(self) -> None:
        from moto.autoscaling.models import autoscaling_backends

        self.lifecycle.expire()
        health: dict[str, dict] = {}  # one `show stat` per ELB and tick, however many instances

        def elb_health(account_id: str, region: str, elb: str, instance_id: str):
            key = elb_key(account_id, region, elb)
            if key not in health:
                health[key] = self.elb_health(account_id, region, elb)
            return health[key].get(instance_id)

        for account_id, regions in list(autoscaling_backends.items()):
            for region, backend in list(regions.items()):
                for group in list(backend.autoscaling_groups.values()):
                    self.lifecycle.replace_unhealthy(
                        group, lambda elb, iid, a=account_id, r=region: elb_health(a, r, elb, iid)
                    )
                    for state in list(group.instance_states):
                        booted = self.instances.get(state.instance.id)
                        if booted is not None:
                            booted.lifecycle = self.lifecycle.target_state(state)

    def _balancers(self) -> None:
        from moto.elb.models import elb_backends

        specs, names = [], {}
        for account_id, regions in list(elb_backends.items()):
            for region, backend in list(regions.items()):
                for elb in list(backend.load_balancers.values()):
                    spec = self._spec(account_id, region, elb)
                    if spec is not None:
                        specs.append(spec)
                        names[elb.dns_name.lower().rstrip(".")] = spec.key
        self._dns_names = names
        try:
            self.balancers.converge(specs)
        except lb.BalancerError as e:
            # Every tick tries again; say it once, not every second.
            if str(e) not in self._warned:
                self._warned.add(str(e))
                LOG.error("load balancers: %s", e)

    def _spec(self, account_id: str, region: str, elb) -> "lb.BalancerSpec | None":
        if not elb.vpc_id:
            return None
        proxy_policies = {
            p.policy_name
            for p in elb.policies
            if getattr(p, "policy_type_name", "") == PROXY_POLICY_TYPE
            and any(
                _ci(a, "AttributeName") == "ProxyProtocol" and _flag(_ci(a, "AttributeValue"))
                for a in getattr(p, "policy_attribute_descriptions", []) or []
            )
        }
        proxy_ports = frozenset(
            int(b.instance_port) for b in elb.backends if proxy_policies & set(b.policy_names)
        )
        hc = elb.health_check
        first_port = int(elb.listeners[0].instance_port) if elb.listeners else 80
        health = lb.HealthCheck(
            target=hc.target if hc else f"TCP:{first_port}",
            interval=int(hc.interval) if hc else 30,
            timeout=int(hc.timeout) if hc else 5,
            healthy_threshold=int(hc.healthy_threshold) if hc else 10,
            unhealthy_threshold=int(hc.unhealthy_threshold) if hc else 2,
        )
        attrs = elb.attributes
        backends = []
        for instance_id in list(elb.instance_ids):
            booted = self.instances.get(instance_id)
            if booted is not None and booted.launch.vpc_id == elb.vpc_id:
                backends.append(lb.Backend(instance_id, booted.vpc_ns, booted.launch.private_ip))
        if backends or elb.instance_ids:
            netns.ensure_vpc(elb.vpc_id, self._vpc_cidr(account_id, region, elb.vpc_id))
        return lb.BalancerSpec(
            key=elb_key(account_id, region, elb.name),
            name=elb.name,
            region=region,
            dns_name=elb.dns_name,
            listeners=tuple(
                (int(li.load_balancer_port), int(li.instance_port), li.protocol) for li in elb.listeners
            ),
            proxy_protocol_ports=proxy_ports,
            health_check=health,
            cross_zone=_flag(_ci(attrs.get("cross_zone_load_balancing") or {}, "enabled", False)),
            draining_timeout=draining_timeout(elb),
            idle_timeout=int(_ci(attrs.get("connection_settings") or {}, "idle_timeout", 60)),
            backends=tuple(backends),
        )

    @staticmethod
    def _vpc_cidr(account_id: str, region: str, vpc_id: str) -> str:
        from moto.ec2.models import ec2_backends

        return ec2_backends[account_id][region].get_vpc(vpc_id).cidr_block

    def _rds_ports(self) -> None:
        from .runtime import rds_data

        ports = set()
        for inst in list(rds_data().instances.values()):
            ports.add(inst.cluster.port)
        self.instances.set_host_ports(ports)

    def _gc_vpcs(self) -> None:
        """A VPC's namespace goes when no instance and no ELB uses it any more."""
        from moto.elb.models import elb_backends

        used = {netns.vpc_ns(i["vpc_id"]) for i in self.instances.listing()}
        for regions in list(elb_backends.values()):
            for backend in list(regions.values()):
                for elb in list(backend.load_balancers.values()):
                    if elb.vpc_id:
                        used.add(netns.vpc_ns(elb.vpc_id))
        for ns in list(netns.created_vpcs):
            if ns not in used:
                netns.delete(ns)
                netns.created_vpcs.discard(ns)

    # --- answers for the APIs -------------------------------------------------------------------

    def elb_health(self, account_id: str, region: str, elb_name: str) -> dict[str, tuple[str, str, str]]:
        """Instance id -> (State, ReasonCode, Description) from the ELB's real health
        checks; empty when the kit runs no balancer for that ELB."""
        return self.balancers.instance_health(elb_key(account_id, region, elb_name))

    def balancer_address(self, dns_name: str) -> str | None:
        key = self._dns_names.get(dns_name.lower().rstrip("."))
        return self.balancers.address(key) if key else None

    def report(self) -> dict:
        host, port = self.dns.address
        balancers = []
        for p in self.balancers.processes():
            health = self.balancers.instance_health(p["key"])
            balancers.append({**p, "instances": {i: h[0] for i, h in health.items()}})
        return {
            "instances": self.instances.listing(),
            "balancers": balancers,
            "dns": {"address": host, "port": port},
        }


def _role(account_id: str, backend, inst, tags: dict) -> str | None:
    """The instance profile's role name (IMDS's iam/security-credentials/<role>)."""
    profile = getattr(inst, "iam_instance_profile", None) or {}
    ref = profile.get("Arn") or profile.get("Name") if isinstance(profile, dict) else None
    template_id = tags.get("aws:ec2launchtemplate:id")
    if not ref and template_id:
        try:
            version = backend._get_template_from_args(
                {"LaunchTemplateId": template_id, "Version": tags.get("aws:ec2launchtemplate:version", "$Default")}
            )
            data = version.data.get("IamInstanceProfile") or {}
            ref = data.get("Arn") or data.get("Name")
        except Exception:
            ref = None
    if not ref:
        return None
    name = ref.rsplit("/", 1)[-1]
    try:
        from moto.iam.models import iam_backends

        roles = iam_backends[account_id]["global"].get_instance_profile(name).roles
        return roles[0].name if roles else name
    except Exception:
        return name


def _patch_moto(plane: DataPlane) -> None:
    """Wakes the controller after the calls that change what runs, gives ELBs AWS's DNS
    name form (moto named every one `<name>.us-east-1.elb.amazonaws.com`, whatever its
    region), and answers DescribeInstanceHealth from the real health checks."""
    from moto.autoscaling.models import FakeAutoScalingGroup
    from moto.ec2.models.instances import InstanceBackend
    from moto.elb.models import ELBBackend

    def waking(cls, name):
        original = getattr(cls, name)

        def call(self, *args, **kwargs):
            try:
                return original(self, *args, **kwargs)
            finally:
                plane.wake()

        setattr(cls, name, call)

    for name in ("run_instances", "terminate_instances", "stop_instances", "start_instances"):
        waking(InstanceBackend, name)
    for name in (
        "register_instances", "deregister_instances", "create_load_balancer", "delete_load_balancer",
        "configure_health_check", "modify_load_balancer_attributes", "set_load_balancer_policies_for_backend_server",
        "create_load_balancer_listeners", "delete_load_balancer_listeners",
    ):
        waking(ELBBackend, name)

    create = ELBBackend.create_load_balancer

    def create_load_balancer(self, name, *args, **kwargs):
        elb = create(self, name, *args, **kwargs)
        elb.dns_name = f"{name}-{random.randint(10**9, 10**10 - 1)}.{self.region_name}.elb.amazonaws.com"
        return elb

    ELBBackend.create_load_balancer = create_load_balancer

    describe = ELBBackend.describe_instance_health

    def describe_instance_health(self, lb_name, instances):
        answer = describe(self, lb_name, instances)
        states = plane.elb_health(self.account_id, self.region_name, lb_name)
        for item in answer:
            if item.get("State") == "Unknown":
                continue
            health = states.get(item["InstanceId"])
            if health is None:
                health = ("OutOfService", "Instance", "Instance has not booted on the kit (no bootable user data).")
            item["State"], item["ReasonCode"], item["Description"] = health
        return answer

    ELBBackend.describe_instance_health = describe_instance_health

    replace = FakeAutoScalingGroup.replace_autoscaling_group_instances

    def replace_autoscaling_group_instances(self, count_needed, propagated_tags):
        """Spreads new instances over the group's subnets (AZs), fewest first, as AWS
        balances a group; moto put every instance in the first subnet."""
        subnets = [s for s in (self.vpc_zone_identifier or "").split(",") if s]
        if len(subnets) <= 1:
            return replace(self, count_needed, propagated_tags)
        saved = self.vpc_zone_identifier
        try:
            for _ in range(count_needed):
                counts = {s: 0 for s in subnets}
                for st in self.instance_states:
                    if st.lifecycle_state == "InService" and st.instance.subnet_id in counts:
                        counts[st.instance.subnet_id] += 1
                self.vpc_zone_identifier = min(subnets, key=lambda s: (counts[s], subnets.index(s)))
                replace(self, 1, dict(propagated_tags))
        finally:
            self.vpc_zone_identifier = saved

    FakeAutoScalingGroup.replace_autoscaling_group_instances = replace_autoscaling_group_instances


def kit_port() -> int:
    listen = os.environ.get("GATEWAY_LISTEN", "127.0.0.1:4566").split(",")[0]
    return int(listen.rsplit(":", 1)[1])


def dns_port() -> int:
    return int(os.environ.get("LOCALSTACK_KIT_DNS_PORT") or 4553)


_plane: DataPlane | None = None
_lock = threading.Lock()


def start(home: str) -> DataPlane:
    global _plane
    with _lock:
        if _plane is None:
            _plane = DataPlane(home, kit_port(), dns_port())
            _plane.start()
        return _plane


def current() -> DataPlane | None:
    return _plane


def stop() -> None:
    global _plane
    with _lock:
        if _plane is not None:
            started = time.monotonic()
            _plane.stop()
            LOG.info("data plane stopped in %.1fs", time.monotonic() - started)
            _plane = None
