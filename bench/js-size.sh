#!/usr/bin/env bash
# Size of the browser script as a dashboard downloads it: anonstats.js (the built, minified
# files in web/dist/) beside posthog-js's own dist files from its npm package (the version
# pinned in tests/browser/package.json), raw and gzipped (gzip -9).
# Usage: bench/js-size.sh   (runs npm ci in tests/browser when posthog-js is missing)
set -euo pipefail
cd "$(dirname "$0")/.."

modules=tests/browser/node_modules
if [ ! -f "$modules/posthog-js/package.json" ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
posthog_version=$(node -p "require('./$modules/posthog-js/package.json').version")

row() {
  local name=$1 file=$2
  printf '| %s | `%s` | %s | %s |\n' "$name" "$file" "$(wc -c <"$file")" "$(gzip -9c "$file" | wc -c)"
}

echo "| script | file | bytes | gzipped bytes |"
echo "|---|---|---:|---:|"
row "anonstats.js (plain script, \`window.anonstats\`)" web/dist/anonstats.min.js
row "anonstats.js (ES module)" web/dist/anonstats.min.mjs
row "anonstats.js (unminified source)" web/anonstats.js
row "posthog-js $posthog_version \`array.js\` (snippet bundle, loads extensions later)" "$modules/posthog-js/dist/array.js"
row "posthog-js $posthog_version \`array.full.js\` (everything bundled)" "$modules/posthog-js/dist/array.full.js"
row "posthog-js $posthog_version \`module.js\` (npm ES module)" "$modules/posthog-js/dist/module.js"
