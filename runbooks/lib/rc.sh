# shellcheck shell=bash
# The shell runbooks/run gives byexample, which compares output only. After any command
# that fails, this prints `[exit status N]` (so a block with a stated output no longer
# matches) and records the command in $RUNBOOK_FAILURES, which fails the runbook even
# where the stated output is a wildcard. A command that is expected to fail says so in
# the runbook: `cmd || echo "refused: exit $?"`.
set -o pipefail
# shellcheck disable=SC2154 # __s and __at are assigned inside PROMPT_COMMAND itself
PROMPT_COMMAND='__s=$?
if [ "$__s" -ne 0 ] && [ "${__at:-}" != "$HISTCMD" ]; then
  echo "[exit status $__s]"
  if [ -n "${RUNBOOK_FAILURES:-}" ]; then
    printf "exit status %s: %s\n" "$__s" "$(HISTTIMEFORMAT="" history 1 | sed "s/^ *[0-9]* *//")" >>"$RUNBOOK_FAILURES"
  fi
fi
__at=$HISTCMD'
