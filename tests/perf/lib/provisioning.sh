# shellcheck shell=bash
# tests/perf: wall time of `provisioner up` on the LocalStack kit (a new stack,
# then a no-op re-run), and of `terraform apply` of terraform/examples/localstack
# for the same stack, in the same run. Both stacks are removed afterwards.
# Needs from run: WORK, ROOT, MODE, PROVISIONER_BIN, plus lib/common.sh and
# bounded() from lib/propagation.sh.

PROV_REGION=${PERF_PROVISIONER_REGION:-us-east-2}
PROV_STACK="perf-$$"
TF_STACK="perf-tf-$$"
TF_RUN="$ROOT/terraform/run-example"

# now_s: seconds since the epoch, to the microsecond.
now_s() { printf '%s' "$EPOCHREALTIME"; }
since() { python3 -c 'import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 2))' "$1" "$(now_s)"; }

prov_down() {
  bounded 600 "$PROVISIONER_BIN" down --region "$PROV_REGION" --stack "$PROV_STACK" \
    --yes --force --skip-final-snapshot >>"$WORK/provisioner-down.log" 2>&1 ||
    log "WARNING: provisioner down of $PROV_STACK failed (log: $WORK/provisioner-down.log)"
}

tf_destroy() {
  bounded 900 "$TF_RUN" destroy --stack "$TF_STACK" --region "$PROV_REGION" \
    --endpoint "$AWS_ENDPOINT_URL" >>"$WORK/terraform-destroy.log" 2>&1 ||
    log "WARNING: terraform destroy of $TF_STACK failed (log: $WORK/terraform-destroy.log)"
}

kit_stop() { "$ROOT/localstack/stop" >>"$WORK/kit.log" 2>&1 || true; }

# measure_provisioning: facts provisioner.{up_s,noop_up_s,terraform_apply_s},
# or skip.provisioner / skip.terraform with the reason.
measure_provisioning() {
  local t ran_before="" endpoint
  [ -x "$PROVISIONER_BIN" ] || { fact skip.provisioner "no provisioner binary at $PROVISIONER_BIN"; return 0; }
  "$ROOT/localstack/status" >/dev/null 2>&1 && ran_before=1
  log "starting the LocalStack kit (installs it on first use; not counted in the budget)"
  t=$(now_s)
  if ! endpoint=$(bounded 900 "$ROOT/localstack/start" 2>>"$WORK/kit.log"); then
    fact skip.provisioner "the LocalStack kit did not start (log: $WORK/kit.log)"
    return 0
  fi
  fact provisioner.kit_start_s "$(since "$t")"
  fact provisioner.region "$PROV_REGION"
  [ -n "$ran_before" ] || at_exit kit_stop
  export AWS_ENDPOINT_URL=$endpoint AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
  unset AWS_PROFILE

  log "provisioner up: a new stack $PROV_STACK in $PROV_REGION on the kit"
  at_exit prov_down
  t=$(now_s)
  if ! bounded 600 "$PROVISIONER_BIN" up --region "$PROV_REGION" --stack "$PROV_STACK" \
    >"$WORK/provisioner-up.log" 2>&1; then
    tail_log provisioner-up
    fact skip.provisioner "provisioner up failed (log: $WORK/provisioner-up.log)"
    return 0
  fi
  fact provisioner.up_s "$(since "$t")"
  t=$(now_s)
  if ! bounded 300 "$PROVISIONER_BIN" up --region "$PROV_REGION" --stack "$PROV_STACK" \
    >"$WORK/provisioner-noop.log" 2>&1; then
    tail_log provisioner-noop
    fact skip.provisioner_noop "the second provisioner up failed (log: $WORK/provisioner-noop.log)"
  else
    fact provisioner.noop_up_s "$(since "$t")"
    grep -q 'nothing to change' "$WORK/provisioner-noop.log" ||
      fact note.provisioner_noop "the second up changed something (log: $WORK/provisioner-noop.log): noop_up_s is not a pure no-op"
  fi
  prov_down
  at_exit_done prov_down

  if [ ! -x "$TF_RUN" ]; then
    fact skip.terraform "no Terraform example yet (terraform/run-example)"
  elif [ "$MODE" = quick ]; then
    fact skip.terraform "--quick skips terraform apply (it takes minutes on the kit); run without --quick"
  else
    log "terraform apply of terraform/examples/localstack: stack $TF_STACK in $PROV_REGION"
    at_exit tf_destroy
    # The offline init (from the provider mirror) happens on the first use, in
    # this untimed plan: it is not part of the apply time.
    bounded 300 "$TF_RUN" plan --stack "$TF_STACK" --region "$PROV_REGION" --endpoint "$endpoint" \
      >"$WORK/terraform-plan.log" 2>&1 || true
    t=$(now_s)
    if bounded 900 "$TF_RUN" apply --stack "$TF_STACK" --region "$PROV_REGION" --endpoint "$endpoint" \
      >"$WORK/terraform-apply.log" 2>&1; then
      fact provisioner.terraform_apply_s "$(since "$t")"
    else
      tail_log terraform-apply
      fact skip.terraform "terraform apply failed (log: $WORK/terraform-apply.log)"
    fi
    tf_destroy
    at_exit_done tf_destroy
  fi
}
