#!/usr/bin/env bash
# Build step of `gdk component build` (the `custom` build system runs only this).
#
# Builds stripped release binaries for each target, places them where `gdk component publish`
# looks (greengrass-build/artifacts/<name>/<version>/) and writes the recipe with the name,
# version and author filled in (greengrass-build/recipes/recipe.yaml).
#
# Environment: GGJH_TARGETS="triple=suffix …" (default: the host, as x86_64),
# GGJH_COMPONENT_NAME / GGJH_COMPONENT_VERSION / GGJH_COMPONENT_AUTHOR override gdk-config.json.
set -euo pipefail
cd "$(dirname "$0")/.."

config_value() {
  python3 - "$1" <<'PY'
import json, sys
config = json.load(open("gdk-config.json"))
name, body = next(iter(config["component"].items()))
print({"name": name, "version": body["version"], "author": body["author"]}[sys.argv[1]])
PY
}

name="${GGJH_COMPONENT_NAME:-$(config_value name)}"
version="${GGJH_COMPONENT_VERSION:-$(config_value version)}"
author="${GGJH_COMPONENT_AUTHOR:-$(config_value author)}"
if [ "$version" = "NEXT_PATCH" ]; then
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
fi
targets="${GGJH_TARGETS:-x86_64-unknown-linux-gnu=x86_64}"
target_dir="${CARGO_TARGET_DIR:-target}"

artifacts="greengrass-build/artifacts/$name/$version"
rm -rf greengrass-build
mkdir -p "$artifacts" greengrass-build/recipes

for pair in $targets; do
  triple="${pair%%=*}"
  suffix="${pair#*=}"
  case "$triple" in
    *-musl) export "CARGO_TARGET_$(echo "$triple" | tr 'a-z-' 'A-Z_')_LINKER=rust-lld" ;;
  esac
  cargo build --release --locked --target "$triple" --bin greengrass-jobs-handler
  install -m 0755 "$target_dir/$triple/release/greengrass-jobs-handler" \
    "$artifacts/greengrass-jobs-handler-$suffix"
done

sed -e "s/{COMPONENT_NAME}/$name/g" \
    -e "s/{COMPONENT_VERSION}/$version/g" \
    -e "s/{COMPONENT_AUTHOR}/$author/g" \
    recipe/recipe.yaml > greengrass-build/recipes/recipe.yaml
echo "built $name $version into greengrass-build/"
