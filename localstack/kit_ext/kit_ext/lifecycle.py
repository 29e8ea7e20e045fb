"""Auto Scaling terminations the way AWS does them, on moto's groups.

moto terminates scaled-in instances at once and has no CompleteLifecycleAction. With a
termination lifecycle hook (`autoscaling:EC2_INSTANCE_TERMINATING`, as the stack's
`<stack>-drain`) AWS instead:
1. takes the instance out of service (`Terminating`) and deregisters it from the
   group's ELBs, which keep its open connections for their draining timeout; the
   hook only starts once that draining is over;
2. holds it in `Terminating:Wait` (IMDS `autoscaling/target-lifecycle-state` says
   `Terminated`) until CompleteLifecycleAction, or the hook's heartbeat timeout runs out
   (RecordLifecycleActionHeartbeat extends it), then applies the result;
3. terminates the EC2 instance.
The order matters to the node: its drain helper stops the gateway when IMDS says
`Terminated`, and a gateway stopped while an ELB still sends it connections drops
them. So the kit moves an instance to `Terminating:Wait` only after the draining
timeout and after the balancers have applied its deregistration (`advance`, called
by the data plane after it converged the balancers).
This module does the same for scale-in (SetDesiredCapacity, UpdateAutoScalingGroup),
TerminateInstanceInAutoScalingGroup and health replacement. DeleteAutoScalingGroup
with ForceDelete skips hooks, on AWS and here.

Health: a group whose HealthCheckType is ELB replaces an instance that one of its ELBs
reports OutOfService once the grace period since launch is over: the instance goes
through the termination above and a new one is launched at once.
"""

import datetime
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

LOG = logging.getLogger("kit.lifecycle")
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"
DRAINING = "Terminating"
WAIT = "Terminating:Wait"


@dataclass
class Action:
    token: str
    account_id: str
    region: str
    group: str
    hook: str
    instance_id: str
    heartbeat: int
    default_result: str
    deadline: float  # of the heartbeat; infinite until the hook's wait starts
    begun_at: float  # when it started terminating
    wait_at: float  # when the ELBs' draining is over and the hook's wait starts

    @property
    def waiting(self) -> bool:
        return self.deadline != float("inf")


class LifecycleError(Exception):
    """Answered as AWS's ValidationError."""


class Lifecycle:
    def __init__(self, on_change: Callable[[], None] = lambda: None,
                 draining_seconds: Callable[[object], int] = lambda group: 0):
        self.actions: dict[tuple[str, str, str], Action] = {}  # (account, region, instance id)
        self.lock = threading.RLock()
        self.on_change = on_change
        # The longest connection-draining timeout of a group's ELBs (the data plane
        # reads ELB attributes).
        self.draining_seconds = draining_seconds

    # --- moto side ----------------------------------------------------------------------

    @staticmethod
    def _hook(group):
        backend = group.autoscaling_backend
        for hook in backend.lifecycle_hooks.values():
            if hook.auto_scaling_group_name == group.name and hook.lifecycle_transition == TERMINATING:
                return hook
        return None

    def begin(self, group, state) -> None:
        """Starts terminating one InService instance of `group`."""
        backend = group.autoscaling_backend
        instance = state.instance
        hook = self._hook(group)
        if hook is None:
            group.instance_states = [s for s in group.instance_states if s is not state]
            backend.ec2_backend.terminate_instances([instance.id])
            LOG.info("group %s: terminating %s (no lifecycle hook)", group.name, instance.id)
            return
        state.lifecycle_state = DRAINING
        heartbeat = int(hook.heartbeat_timeout or 3600)
        draining = self.draining_seconds(group)
        action = Action(
            token=str(uuid.uuid4()),
            account_id=backend.account_id,
            region=backend.region_name,
            group=group.name,
            hook=hook.name,
            instance_id=instance.id,
            heartbeat=heartbeat,
            default_result=hook.default_result or "ABANDON",
            deadline=float("inf"),
            begun_at=time.monotonic(),
            wait_at=time.monotonic() + draining,
        )
        with self.lock:
            self.actions[(action.account_id, action.region, instance.id)] = action
        LOG.info("group %s: %s is %s (ELB connection draining %ss, then hook %s)",
                 group.name, instance.id, DRAINING, draining, hook.name)

    def advance(self, converged_since: float) -> None:
        """Moves instances whose ELB draining is over to `Terminating:Wait`, where the
        hook's heartbeat starts. The data plane calls it after the balancers converged
        on what moto had at `converged_since` (a monotonic time): only terminations
        begun before that are deregistered for sure, so only those move (IMDS then says
        `Terminated`), even with draining off."""
        from moto.autoscaling.models import autoscaling_backends

        now = time.monotonic()
        with self.lock:
            due = [a for a in self.actions.values()
                   if not a.waiting and a.wait_at <= now and a.begun_at < converged_since]
        for a in due:
            group = autoscaling_backends[a.account_id][a.region].autoscaling_groups.get(a.group)
            for state in group.instance_states if group is not None else []:
                if state.instance.id == a.instance_id and state.lifecycle_state == DRAINING:
                    state.lifecycle_state = WAIT
            a.deadline = now + a.heartbeat
            LOG.info("group %s: %s is %s (hook %s, heartbeat %ss)", a.group, a.instance_id, WAIT, a.hook, a.heartbeat)

    def finish(self, action: Action, result: str) -> None:
        """Completes a lifecycle action: for a termination, CONTINUE and ABANDON both
        terminate the instance."""
        from moto.autoscaling.models import autoscaling_backends

        with self.lock:
            self.actions.pop((action.account_id, action.region, action.instance_id), None)
        backend = autoscaling_backends[action.account_id][action.region]
        group = backend.autoscaling_groups.get(action.group)
        if group is not None:
            group.instance_states = [s for s in group.instance_states if s.instance.id != action.instance_id]
        try:
            backend.ec2_backend.terminate_instances([action.instance_id])
        except Exception as e:  # already gone
            LOG.info("terminate %s: %s", action.instance_id, e)
        LOG.info("group %s: %s terminated (%s)", action.group, action.instance_id, result)
        self.on_change()

    def complete(self, account_id: str, region: str, group: str, hook: str, result: str,
                 instance_id: str | None, token: str | None) -> None:
        if result not in ("CONTINUE", "ABANDON"):
            raise LifecycleError("LifecycleActionResult must be CONTINUE or ABANDON")
        action = self._find(account_id, region, group, hook, instance_id, token)
        self.finish(action, result)

    def heartbeat(self, account_id: str, region: str, group: str, hook: str,
                  instance_id: str | None, token: str | None) -> None:
        action = self._find(account_id, region, group, hook, instance_id, token)
        action.deadline = time.monotonic() + action.heartbeat

    def _find(self, account_id, region, group, hook, instance_id, token) -> Action:
        with self.lock:
            for a in self.actions.values():
                # Before its wait starts (the ELBs still drain), AWS has no action either.
                if (a.account_id, a.region, a.group, a.hook) != (account_id, region, group, hook) or not a.waiting:
                    continue
                if (instance_id and a.instance_id == instance_id) or (token and a.token == token):
                    return a
        what = f"instance ID {instance_id}" if instance_id else f"token {token}"
        raise LifecycleError(f"No active Lifecycle Action found with {what}")

    def target_state(self, state) -> str:
        """IMDS autoscaling/target-lifecycle-state for an instance of a group."""
        ls = state.lifecycle_state or ""
        if ls.startswith("Terminating"):
            # Not while the ELBs drain it (see the module's docstring).
            return "InService" if ls == DRAINING else "Terminated"
        if ls.startswith("Standby") or ls.startswith("EnteringStandby"):
            return "Standby"
        if ls.startswith("Detach"):
            return "Detached"
        return "InService"

    # --- the controller's tick ---------------------------------------------------------------

    def expire(self) -> None:
        now = time.monotonic()
        with self.lock:
            due = [a for a in self.actions.values() if a.deadline <= now]
        for a in due:
            LOG.info("group %s: %s heartbeat timeout, default result %s", a.group, a.instance_id, a.default_result)
            self.finish(a, a.default_result)

    def replace_unhealthy(self, group, elb_health: Callable[[str, str], tuple[str, str] | None]) -> list[str]:
        """ELB health checks: InService instances past their grace period that an ELB of
        the group reports OutOfService are replaced. Returns the replaced ids."""
        if (group.health_check_type or "EC2").upper() != "ELB" or not group.load_balancer_names:
            return []
        grace = datetime.timedelta(seconds=int(group.health_check_grace_period or 0))
        now = datetime.datetime.now(datetime.timezone.utc)
        replaced = []
        for state in list(group.instance_states):
            if state.lifecycle_state != "InService":
                continue
            launched = state.instance.launch_time
            if isinstance(launched, str):
                launched = datetime.datetime.fromisoformat(launched.replace("Z", "+00:00"))
            if launched.tzinfo is None:
                launched = launched.replace(tzinfo=datetime.timezone.utc)
            if now - launched < grace:
                continue
            for elb in group.load_balancer_names:
                health = elb_health(elb, state.instance.id)
                if health is not None and health[0] == "OutOfService":
                    LOG.info("group %s: %s is OutOfService in ELB %s (%s): replacing it",
                             group.name, state.instance.id, elb, health[1])
                    state.health_status = "Unhealthy"
                    self.begin(group, state)
                    group.replace_autoscaling_group_instances(1, group.get_propagated_tags())
                    group.autoscaling_backend.update_attached_elbs(group.name)
                    replaced.append(state.instance.id)
                    break
        return replaced


def _oldest_first(states: list) -> list:
    """AWS's default termination policy, without zones: the oldest launch template
    version, then the oldest instance."""

    def key(state):
        tags = state.instance.ec2_backend.tags.get(state.instance.id, {})
        version = tags.get("aws:ec2launchtemplate:version", "0")
        return (int(version) if version.isdigit() else 0, str(state.instance.launch_time))

    return sorted(states, key=key)


def patch(lifecycle: Lifecycle) -> None:
    """Routes moto's scale-in, TerminateInstanceInAutoScalingGroup and group deletion
    through `lifecycle`."""
    from moto.autoscaling.models import AutoScalingBackend, FakeAutoScalingGroup, TerminateInstanceActivity

    original_set = FakeAutoScalingGroup.set_desired_capacity
    original_delete = AutoScalingBackend.delete_auto_scaling_group

    def set_desired_capacity(self, new_capacity):
        desired = self.min_size if new_capacity is None else new_capacity
        active = self.active_instances()
        if getattr(self, "_kit_force", False) or self.mixed_instances_policy or desired >= len(active):
            return original_set(self, new_capacity)
        self.desired_capacity = desired
        removable = [s for s in active if not s.protected_from_scale_in]
        for state in _oldest_first(removable)[: len(active) - desired]:
            lifecycle.begin(self, state)
        if self.name in self.autoscaling_backend.autoscaling_groups:
            self.autoscaling_backend.update_attached_elbs(self.name)
        lifecycle.on_change()

    def terminate_instance(self, instance_id, should_decrement):
        state = next(
            (s for g in self.autoscaling_groups.values() for s in g.instance_states if s.instance.id == instance_id),
            None,
        )
        if state is None:
            raise LifecycleError(f"Instance Id not found - No managed instance found for instance ID: {instance_id}")
        group = state.instance.autoscaling_group
        original_size = group.desired_capacity
        if state.lifecycle_state == "InService":
            lifecycle.begin(group, state)
            if should_decrement:
                group.desired_capacity = max(0, group.desired_capacity - 1)
            original_set(group, group.desired_capacity)  # launches the replacement
            self.update_attached_elbs(group.name)
        lifecycle.on_change()
        return TerminateInstanceActivity(state.instance, original_size)

    def delete_auto_scaling_group(self, group_name):
        group = self.autoscaling_groups.get(group_name)
        if group is not None:
            group._kit_force = True
            with lifecycle.lock:
                for key in [k for k, a in lifecycle.actions.items() if a.group == group_name and a.region == self.region_name]:
                    del lifecycle.actions[key]
            waiting = [s.instance.id for s in group.instance_states if s.lifecycle_state != "InService"]
            group.instance_states = [s for s in group.instance_states if s.lifecycle_state == "InService"]
            if waiting:
                self.ec2_backend.terminate_instances(waiting)
        result = original_delete(self, group_name)
        lifecycle.on_change()
        return result

    FakeAutoScalingGroup.set_desired_capacity = set_desired_capacity
    AutoScalingBackend.terminate_instance = terminate_instance
    AutoScalingBackend.delete_auto_scaling_group = delete_auto_scaling_group
