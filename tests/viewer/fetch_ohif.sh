#!/bin/sh
# Fetch the prebuilt OHIF Viewer (npm package @ohif/app, its dist/ folder) for tests/viewer/.
# About 50 MB download, 204 MB unpacked, a few seconds; needs only npm's registry, no build.
# Usage: tests/viewer/fetch_ohif.sh [DEST]   (default ~/.cache/olvf/ohif-3.13.2; the
# viewer check then finds DEST/package/dist, or set OLVF_OHIF_DIST to that folder)
set -eu
VERSION=3.13.2
DEST=${1:-"$HOME/.cache/olvf/ohif-$VERSION"}
if [ -f "$DEST/package/dist/index.html" ]; then echo "$DEST/package/dist"; exit 0; fi
mkdir -p "$DEST"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
(cd "$TMP" && npm pack --silent "@ohif/app@$VERSION" >/dev/null)
tar xzf "$TMP/ohif-app-$VERSION.tgz" -C "$DEST"
echo "$DEST/package/dist"
