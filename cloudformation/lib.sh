# shellcheck shell=bash
# Sourced by cloudformation/lint (and the test command): installs the template's linters.

CFN_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CFN_LINT_VENV=${CFN_LINT_VENV:-$CFN_DIR/.venv}

# cfn_install_linters makes $CFN_LINT_VENV hold exactly requirements-lint.txt's pins
# (cfn-lint, checkov), a venv of their own: checkov pins old boto3 and networkx. It
# reinstalls only when the requirements change (stamp in the venv). Python: CFN_PYTHON,
# else python3.11, else python3.
cfn_install_linters() {
  local req="$CFN_DIR/requirements-lint.txt" py want log
  want=$(sha256sum "$req" | cut -d' ' -f1)
  if [ -x "$CFN_LINT_VENV/bin/cfn-lint" ] && [ -x "$CFN_LINT_VENV/bin/checkov" ] &&
    [ "$(cat "$CFN_LINT_VENV/.requirements-lint" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  py=${CFN_PYTHON:-$(command -v python3.11 || command -v python3 || true)}
  [ -n "$py" ] || {
    echo "cloudformation: no python3 to install the linters with" >&2
    return 1
  }
  log=$(mktemp)
  echo "cloudformation: installing cfn-lint and checkov into $CFN_LINT_VENV" >&2
  if ! { "$py" -m venv --clear "$CFN_LINT_VENV" &&
    "$CFN_LINT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"; } >"$log" 2>&1; then
    tail -n 20 "$log" >&2
    rm -f "$log"
    echo "cloudformation: installing the linters failed" >&2
    return 1
  fi
  rm -f "$log"
  printf '%s\n' "$want" >"$CFN_LINT_VENV/.requirements-lint"
}
