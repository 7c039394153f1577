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

# resolve_project EXPLICIT: --project, else $CLOUDSDK_CORE_PROJECT / $GOOGLE_CLOUD_PROJECT, else gcloud config.
resolve_project() {
  local project="${1:-${CLOUDSDK_CORE_PROJECT:-${GOOGLE_CLOUD_PROJECT:-}}}"
  if [[ -z "${project}" ]] && command -v gcloud >/dev/null 2>&1; then
    project="$(gcloud config get-value project 2>/dev/null || true)"
    [[ "${project}" == "(unset)" ]] && project=""
  fi
  [[ -n "${project}" ]] || die "no Google Cloud project: pass --project PROJECT_ID, set CLOUDSDK_CORE_PROJECT, or run \`gcloud config set project PROJECT_ID\`"
  printf '%s\n' "${project}"
}
