#!/usr/bin/env bash
# Shared helpers of the shell operator scripts (bootstrap, deploy): sourced, never run.

# The repository root, wherever the script is called from.
HOLEPUNCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck disable=SC2034  # used by the scripts that source this file
TF_DIR="${HOLEPUNCH_ROOT}/infra/terraform"
DRY_RUN=0

die() {
  echo "$(basename "$0"): error: $*" >&2
  exit 2
}

# require_cmd NAME HINT: fail with a clear message when a tool is missing (a warning in --dry-run).
require_cmd() {
  if ! command -v "$1" >/dev/null 2>&1; then
    if [[ "${DRY_RUN}" == 1 ]]; then
      echo "$(basename "$0"): warning: $1 not found on PATH ($2); printing commands anyway" >&2
    else
      die "$1 not found on PATH: $2"
    fi
  fi
}

# run CMD...: run a command, or print it (shell-quoted) in --dry-run.
run() {
  if [[ "${DRY_RUN}" == 1 ]]; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

# The order resolve_project follows, for each script's --help.
# shellcheck disable=SC2034  # used by the scripts that source this file
PROJECT_ORDER="--project, else \$CLOUDSDK_CORE_PROJECT, else \$GOOGLE_CLOUD_PROJECT, else \`terraform output project_id\`, else \`gcloud config get-value project\`"

# resolve_project EXPLICIT: the project, in PROJECT_ORDER; the one helper every script shares
# (scripts/holepunch_cli.py), so bootstrap, deploy, logs and verify cannot disagree.
resolve_project() {
  command -v python3 >/dev/null 2>&1 || die "python3 not found on PATH: the operator scripts need it"
  python3 "${HOLEPUNCH_ROOT}/scripts/holepunch_cli.py" project --prog "$(basename "$0")" "$@" ||
    exit 2
}
