#!/usr/bin/env bash
# Screenshot an hwssl HTML report with headless Chromium (no network, throw-away profile).
#   scripts/screenshot_report.sh REPORT.html OUT.png [WIDTH,HEIGHT]
# Needs Debian's `chromium` (apt-get install chromium).
set -euo pipefail
if [[ $# -lt 2 ]]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTH,HEIGHT (default 1400,4000)]" >&2
  exit 2
fi
report=$1
out=$2
size=${3:-1400,4000}
[[ -f "$report" ]] || { echo "error: $report does not exist" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || true)
[[ -n "$browser" ]] || { echo "error: chromium not found; install it with: apt-get install chromium" >&2; exit 2; }
abs_report=$(realpath "$report")
abs_out=$(realpath -m "$out")
mkdir -p "$(dirname "$abs_out")"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --hide-scrollbars --user-data-dir="$profile" \
  --screenshot="$abs_out" --window-size="$size" "file://$abs_report" >/dev/null 2>&1
[[ -s "$abs_out" ]] || { echo "error: chromium wrote no screenshot to $abs_out" >&2; exit 1; }
echo "$abs_out"
