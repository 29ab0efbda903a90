#!/usr/bin/env bash
# Builds the Debian package the Debian way (debhelper, dpkg-buildpackage
# -us -uc -b) and checks it with lintian.
#
#   packaging/build-deb.sh [OUTDIR]    (default: build-deb/)
#
# The debian/ directory lives in packaging/debian so that the top level
# keeps the project's own layout; this script builds from a scratch copy of
# the source tree with that directory placed at debian/, as dpkg-buildpackage
# expects. Nothing in the working tree is written except OUTDIR.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$src/build-deb}" && cd "${1:-$src/build-deb}" && pwd)
jobs=$(nproc)

for tool in dpkg-buildpackage:dpkg-dev dh:debhelper fakeroot:fakeroot lintian:lintian; do
  if ! command -v "${tool%%:*}" >/dev/null; then
    echo "build-deb: ${tool%%:*} is missing (Debian package ${tool#*:}; packaging/setup.sh installs it)" >&2
    exit 1
  fi
done

work=$(mktemp -d /tmp/bantam-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
tree="$work/bantam"
mkdir "$tree"
# The files the project tracks (and new ones not yet committed), never build
# directories or other local output.
if git -C "$src" rev-parse --git-dir >/dev/null 2>&1; then
  (cd "$src" && git ls-files -z --cached --others --exclude-standard) |
    while IFS= read -r -d '' f; do
      if [ -e "$src/$f" ] || [ -L "$src/$f" ]; then printf '%s\0' "$f"; fi
    done |
    tar -C "$src" --null --no-recursion -T - -cf - | tar -xf - -C "$tree"
else
  tar -C "$src" --exclude='./build*' --exclude=./.git -cf - . | tar -xf - -C "$tree"
fi
cp -r "$src/packaging/debian" "$tree/debian"
cp "$src/packaging/bantam.service" "$tree/debian/bantam.service"

echo "== dpkg-buildpackage -us -uc -b (in $tree)"
(cd "$tree" && DEB_BUILD_OPTIONS="parallel=$jobs ${DEB_BUILD_OPTIONS:-}" \
  dpkg-buildpackage -us -uc -b)

for f in "$work"/*.deb "$work"/*.ddeb "$work"/*.buildinfo "$work"/*.changes; do
  [ -e "$f" ] && cp "$f" "$out/"
done
changes=$(ls "$work"/*.changes)
echo "== lintian"
# Errors fail the build; warnings are either fixed or overridden with a
# reason in packaging/debian/bantam.lintian-overrides.
lintian --fail-on error,warning --display-info "$changes"
ls "$out"/bantam_*.deb
