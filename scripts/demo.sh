#!/usr/bin/env bash
# The walk a new user takes: build the multi-site-routing lab, look at it, grade the broken
# starting state, apply the reference solution, grade again, remove the lab.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"
scenario=scenarios/multi-site-routing
say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say labctl doctor;                  labctl doctor || true
say labctl up $scenario;            labctl up $scenario --name demo
trap 'labctl down --lab demo' EXIT
say labctl status;                  labctl status --lab demo
say labctl exec h1 -- ip route;     labctl exec --lab demo h1 -- ip route
say labctl grade;                   labctl grade --lab demo || true
say labctl play playbooks/multi-site-routing/solution.yml
labctl play --lab demo playbooks/multi-site-routing/solution.yml
say labctl grade;                   labctl grade --lab demo
say labctl down;                    labctl down --lab demo; trap - EXIT
echo; echo "demo finished: the lab is gone (ip netns list shows nothing of it)"
