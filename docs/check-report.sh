#!/usr/bin/env bash
# A person's check of a report page: headless Chromium renders it and takes a screenshot, for
# someone to look at (charts drawn and readable, labels apart, tables under the charts).
#
#   docs/check-report.sh [PAGE] [SCREENSHOT]
#
# PAGE defaults to synor-report/index.html (what `synor` writes), SCREENSHOT to PAGE's
# directory/screenshot.png. Needs Chromium (`apt-get install chromium` on Debian); not part of
# CI. Besides the screenshot it checks what a browser need not: the page fetches nothing and
# runs no script, and every <svg> is closed.
set -euo pipefail

page=${1:-synor-report/index.html}
[ -f "$page" ] || { echo "check-report: no page at $page (run \`synor\` or a bench with --report DIR first)" >&2; exit 1; }
page=$(cd "$(dirname "$page")" && pwd)/$(basename "$page")
shot=${2:-$(dirname "$page")/screenshot.png}

chromium=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$chromium" ] || { echo "check-report: no Chromium (apt-get install chromium)" >&2; exit 1; }

# Self-contained: the only URL is the SVG namespace; no script; every chart closed.
if grep -o 'https\?://[^"]*' "$page" | grep -v '^http://www.w3.org/2000/svg$' | grep -q .; then
    echo "check-report: $page refers to the network:" >&2
    grep -o 'https\?://[^"]*' "$page" | grep -v '^http://www.w3.org/2000/svg$' >&2
    exit 1
fi
if grep -qi '<script' "$page"; then echo "check-report: $page has a script" >&2; exit 1; fi
opened=$(grep -o '<svg' "$page" | wc -l)
closed=$(grep -o '</svg>' "$page" | wc -l)
[ "$opened" = "$closed" ] || { echo "check-report: $opened <svg> but $closed </svg>" >&2; exit 1; }

# The whole page: tall enough for every section (Chromium cuts the screenshot at the window).
sections=$(grep -o '<section ' "$page" | wc -l)
charts=$opened
height=$(( 600 + 520 * charts + 200 * sections ))
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# Root needs --no-sandbox; nothing is fetched (and the page asks for nothing).
"$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" \
    --screenshot="$shot" --window-size=1280,"$height" "file://$page" >/dev/null 2>&1
[ -s "$shot" ] || { echo "check-report: Chromium wrote no screenshot" >&2; exit 1; }
echo "check-report: $opened charts in $sections sections; screenshot $shot (1280x$height)"
