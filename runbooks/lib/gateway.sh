# shellcheck shell=bash
# The few helpers every runbook sources, so that one command line reads the same on
# AWS and on the LocalStack kit. Each is a plain AWS CLI, dig or curl call; read them
# before an incident, not during one.
#
# Needs REGION and STACK. Optional:
#   DNS_SERVER   host:port of the resolver for the ELB's name (the kit's: 127.0.0.1:4553;
#                empty on AWS: the system's resolver)
#   ON_KIT       set (by runbooks/run --kit) when the stack runs on the LocalStack kit:
#                the Admin API is then reached through the VPC's network namespace, and
#                on_node enters an instance's namespaces. On AWS, run the runbooks from
#                a bastion (or an SSM session) inside the stack's VPC: 8001 is not on
#                the ELB.
#   ADMIN_TOKEN_SECRET  the SSM parameter holding the admin token
#                (default /$STACK/gateway/admin-token, as `provisioner up` names it)

export AWS_REGION="$REGION" AWS_DEFAULT_REGION="$REGION"

# With AWS_ENDPOINT_URL set (the kit), pass it on explicitly: the AWS CLI v1 ignores the
# variable for some services (rds). Without it (AWS), this is plain `aws`.
aws() {
  command aws ${AWS_ENDPOINT_URL:+--endpoint-url "$AWS_ENDPOINT_URL"} "$@"
}

# A name's IPv4 address, as a client resolves it (the last A record of the answer).
resolve() {
  if [ -n "${DNS_SERVER:-}" ]; then
    dig +short "@${DNS_SERVER%:*}" -p "${DNS_SERVER##*:}" "$1" A | tail -n 1
  else
    dig +short "$1" A | tail -n 1
  fi
}

# The ELB's address: its DNS name resolved as a client would.
elb_address() {
  local name
  name=$(aws elb describe-load-balancers --load-balancer-names "$STACK-elb" \
    --query 'LoadBalancerDescriptions[0].DNSName' --output text) || return
  resolve "$name"
}

# One request through the ELB: prints the status code. `through_elb /path [curl args]`
through_elb() {
  local path=$1
  shift
  curl -sS -o /dev/null -w '%{http_code}\n' --max-time 10 "$@" "http://$(elb_address)$path"
}

# Succeeds when PATH answers 200 through the ELB (for wait_until).
serves() {
  [ "$(through_elb "$1")" = 200 ]
}

# The private IPs of the group's running nodes, one per line, sorted.
node_ips() {
  aws ec2 describe-instances \
    --filters "Name=tag:aws:autoscaling:groupName,Values=$STACK-nodes" Name=instance-state-name,Values=running \
    --query 'Reservations[].Instances[].PrivateIpAddress' --output text | tr '\t' '\n' | sort
}

# How many of the ELB's instances pass its health check.
in_service_count() {
  # shellcheck disable=SC2016 # a JMESPath literal, not a shell expansion
  aws elb describe-instance-health --load-balancer-name "$STACK-elb" \
    --query 'length(InstanceStates[?State==`InService`])' --output text
}

# The group's desired capacity.
desired_capacity() {
  aws autoscaling describe-auto-scaling-groups --auto-scaling-group-names "$STACK-nodes" \
    --query 'AutoScalingGroups[0].DesiredCapacity' --output text
}

# Succeeds once every wanted node passes the ELB's health check.
all_in_service() {
  [ "$(in_service_count)" -ge "$(desired_capacity)" ]
}

# Runs a command inside the stack's VPC: as is on a bastion; on the kit, in the VPC's
# network namespace.
in_vpc() {
  if [ -n "${ON_KIT:-}" ]; then
    local vpc
    vpc=$(aws ec2 describe-vpcs --filters "Name=tag:gateway-kit:stack,Values=$STACK" \
      --query 'Vpcs[0].VpcId' --output text) || return
    ip netns exec "kit-vpc-${vpc#vpc-}" "$@"
  else
    "$@"
  fi
}

# Runs a command on a node (for practice drills that break one on purpose). On the kit
# it enters the instance's namespaces; on AWS use Session Manager or your SSH path.
on_node() {
  local id=$1 pid
  shift
  if [ -z "${ON_KIT:-}" ]; then
    echo "on_node: open a shell on $id (Session Manager or SSH) and run: $*" >&2
    return 2
  fi
  pid=$(curl -fsS --max-time 10 "$AWS_ENDPOINT_URL/_kit/dataplane" |
    jq -r --arg id "$id" '.instances[] | select(.instance_id == $id) | .pid') || return
  [ -n "$pid" ] || { echo "on_node: no running instance $id on the kit" >&2; return 1; }
  nsenter -t "$pid" -m -u -n -p -- "$@"
}

# A node's Admin API: `admin NODE_IP METHOD PATH [curl args]`. The token goes through
# a 0600 file, never a command line or the shell's history.
admin() {
  local ip=$1 method=$2 path=$3 header rc=0
  shift 3
  header=$(umask 077 && mktemp)
  printf 'Kong-Admin-Token: %s\n' "$(aws ssm get-parameter --with-decryption \
    --name "${ADMIN_TOKEN_SECRET:-/$STACK/gateway/admin-token}" \
    --query Parameter.Value --output text)" >"$header"
  in_vpc curl -sS --fail-with-body --max-time 10 -X "$method" -H "@$header" "$@" "http://$ip:8001$path" || rc=$?
  rm -f "$header"
  return "$rc"
}

# Polls `command...` every 5 s until it succeeds, for at most SECONDS, printing
# progress, then `ok: DESCRIPTION (Ns)`: `wait_until SECONDS DESCRIPTION command...`
wait_until() {
  local limit=$1 what=$2 start=$SECONDS
  shift 2
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS - start >= limit)); then
      echo "gave up after ${limit}s waiting for $what" >&2
      return 1
    fi
    echo "waiting for $what ($((SECONDS - start))s)" >&2
    sleep 5
  done
  echo "ok: $what ($((SECONDS - start))s)"
}
