#!/usr/bin/env bash
# Install the prebuilt OHIF viewer (@ohif/app, pinned with its sha512 in scripts/ohif-app.lock) into
# vendor/ohif, served by the portal at /ohif/ behind its login (screening/ohif.py). `npm pack` fetches the
# tarball through npm's cache; nothing is fetched at run time, and nothing built is committed.
# The build is made for the site root: its webpack public path ("/") and its stylesheet's font URL
# are rewritten to /ohif/ (checked: the build fails if a pattern is missing). The stock app-config,
# service-worker and Google Cloud files are left out: the portal serves its own app-config.js.
# Skips the work when vendor/ohif holds this integrity. FORCE=1 reinstalls.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=vendor/ohif
STAMP="$OUT/.build-stamp"
lock() { sed -n "s/^$1=//p" scripts/ohif-app.lock; }
name=$(lock name) version=$(lock version) integrity=$(lock integrity)
if [ -z "${FORCE:-}" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$integrity" ]; then
  echo "==> OHIF $version is installed ($OUT)"
  exit 0
fi
command -v npm >/dev/null || { echo "build_ohif: npm is needed to fetch $name" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "==> Fetching $name@$version (npm pack, about 50 MB; npm's cache on later builds)"
npm pack "$name@$version" --pack-destination "$work" --silent --no-audit --no-fund >/dev/null
tarball=$(ls "$work"/*.tgz)
got=$(node -e 'const c = require("crypto"), fs = require("fs");
process.stdout.write("sha512-" + c.createHash("sha512").update(fs.readFileSync(process.argv[1])).digest("base64"))' "$tarball")
if [ "$got" != "$integrity" ]; then
  echo "build_ohif: $tarball has integrity $got, scripts/ohif-app.lock pins $integrity" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work" package/dist
dist="$work/package/dist"
rm -f "$dist"/{app-config.js,sw.js,init-service-worker.js,google.js,_redirects,_headers,serve.json}
# Public path: every webpack runtime (the app and its workers) says "/" once.
patched=0
for f in "$dist"/*.js; do
  if grep -q '__webpack_require__.p = "/";' "$f"; then
    sed -i 's|__webpack_require__.p = "/";|__webpack_require__.p = "/ohif/";|' "$f"
    patched=$((patched + 1))
  fi
done
grep -q '__webpack_require__.p = "/ohif/";' "$dist"/app.bundle.*.js || { echo "build_ohif: the app bundle's public path was not found" >&2; exit 1; }
grep -q 'url(/' "$dist/app.bundle.css" || { echo "build_ohif: the stylesheet's font URL was not found" >&2; exit 1; }
sed -i 's|url(/|url(/ohif/|g' "$dist"/*.css
# A gzip copy of each text and wasm file at the top (the page's own; ort/ and the microscopy viewer load only
# in modes a mammography reader does not use), served to browsers that take gzip: 17 MB of app bundle is 3.4 MB.
find "$dist" -maxdepth 1 -type f \( -name '*.js' -o -name '*.css' -o -name '*.wasm' -o -name '*.json' \) -size +2k \
  -exec gzip -k -6 {} +
rm -rf "$OUT"
mkdir -p "$(dirname "$OUT")"
mv "$dist" "$OUT"
echo "$integrity" > "$STAMP"
echo "==> OHIF $version installed in $OUT: $(du -sh "$OUT" | cut -f1), $patched webpack runtimes pointed at /ohif/"
