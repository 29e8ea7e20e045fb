# shellcheck shell=bash
# The shell runbooks/run gives byexample: a failing command prints its exit status, so
# that a block whose command fails no longer matches its expected output and fails the
# runbook (byexample compares output only). A command that is expected to fail says so
# in its expected output: `[exit status 22]`.
set -o pipefail
# shellcheck disable=SC2154 # __s and __at are assigned inside PROMPT_COMMAND itself
PROMPT_COMMAND='__s=$?; if [ "$__s" -ne 0 ] && [ "${__at:-}" != "$HISTCMD" ]; then echo "[exit status $__s]"; fi; __at=$HISTCMD'
