#!/usr/bin/env bash
# Build the case viewer (Cornerstone3D + static/viewer/src) into static/viewer/dist with Vite,
# from package.json and package-lock.json only (npm ci: the locked versions, nothing else).
# Skips the work when the build is current: the stamp is a hash of the lock file, the Vite
# config and every source file. FORCE=1 rebuilds. scripts/test.sh and scripts/run.sh call it.
set -euo pipefail
cd "$(dirname "$0")/.."
DIST=static/viewer/dist
STAMP="$DIST/.build-stamp"

if ! command -v npm >/dev/null; then
  echo "build_viewer: npm (Node.js 20.19 or newer) is needed to build the viewer" >&2
  exit 1
fi
inputs() { sha256sum package.json package-lock.json static/viewer/vite.config.js $(find static/viewer/src -type f | sort) | sha256sum | cut -d' ' -f1; }
want=$(inputs)
if [ -z "${FORCE:-}" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  echo "==> Viewer build is current ($DIST)"
  exit 0
fi
# Vite 8 runs on Node.js ^20.19 or >=22.12; an older Node fails deep inside npm ci or the build: say so first.
node_version=$(node -p process.versions.node 2>/dev/null || echo none)
if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)' 2>/dev/null; then
  echo "build_viewer: Node.js ${node_version} is too old to build the viewer: Vite 8 needs 20.19+ or 22.12+ (see the README's prerequisites)" >&2
  exit 1
fi
lock_hash=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.lock-hash ] || [ "$(cat node_modules/.lock-hash)" != "$lock_hash" ]; then
  echo "==> Installing the viewer's npm packages (npm ci, about 40 s, 107 MB)"
  # npm prints nothing until it is done: say every 10 s that it is still working.
  ( while sleep 10; do echo "    npm ci: still installing ($(du -sm node_modules 2>/dev/null | cut -f1) MB so far)"; done ) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null || true' EXIT
  npm ci --no-audit --no-fund --loglevel=error
  kill $ticker 2>/dev/null || true
  echo "$lock_hash" > node_modules/.lock-hash
fi
echo "==> Building the viewer with Vite into $DIST (about 10 s)"
start=$(date +%s)
npx --no-install vite build --config static/viewer/vite.config.js
npx --no-install vite build --config static/viewer/vite.config.js --mode early  # early.js: one file, no chunks
echo "$want" > "$STAMP"
echo "==> Viewer built in $(( $(date +%s) - start )) s: $(du -sh "$DIST" | cut -f1)"
