#!/bin/sh
# /etc/nginx/templates/X.conf.template -> /etc/nginx/conf.d/X.conf with ${VAR}s of the
# environment substituted (only defined variables, so nginx's own $vars survive), as upstream.
set -e

dir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
suffix=${NGINX_ENVSUBST_TEMPLATE_SUFFIX:-.template}
out=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
filter=${NGINX_ENVSUBST_FILTER:-}

[ -d "$dir" ] || exit 0
if [ ! -w "$out" ]; then
  echo "$0: $out is not writable, templates not applied" >&2
  exit 0
fi
# shellcheck disable=SC2016,SC2046  # literal ${NAME} patterns for envsubst, one per variable
defined=$(printf '${%s} ' $(awk "END { for (name in ENVIRON) { print ( name ~ /${filter}/ ) ? name : \"\" } }" </dev/null))
find "$dir" -follow -type f -name "*$suffix" -print | while read -r template; do
  rel=${template#"$dir/"}
  output="$out/${rel%"$suffix"}"
  mkdir -p "$(dirname "$output")"
  echo "$0: $template -> $output"
  envsubst "$defined" <"$template" >"$output"
done
