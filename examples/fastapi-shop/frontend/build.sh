#!/bin/sh
# The frontend's build: bakes the version into the page and gives the assets content-hashed
# names (app.<hash>.js, style.<hash>.css) so they can be cached for long.
# Usage: build.sh SRC OUT VERSION
set -eu
src=$1 out=$2 version=$3
mkdir -p "$out"
for asset in app.js style.css; do
  hash=$(sed "s/__APP_VERSION__/$version/g" "$src/$asset" | sha256sum | cut -c1-10)
  name="${asset%.*}.$hash.${asset##*.}"
  sed "s/__APP_VERSION__/$version/g" "$src/$asset" >"$out/$name"
  echo "s/$asset/$name/g" >>"$out/.rename.sed"
done
sed -e "s/__APP_VERSION__/$version/g" -f "$out/.rename.sed" "$src/index.html" >"$out/index.html"
rm "$out/.rename.sed"
printf '{"version":"%s"}\n' "$version" >"$out/version.json"
chmod -R a+rX "$out"
ls -l "$out"
