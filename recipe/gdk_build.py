#!/usr/bin/env python3
"""Build step of `gdk component build` (GDK's `custom` build system runs only this command, from
the project root).

Builds stripped static release binaries of the component alone (`--no-default-features`: no
emulator, no HTTP server, no CLI parser) per architecture, places them where `gdk component
publish` looks (greengrass-build/artifacts/<name>/<version>/greengrass-jobs-handler-<arch>) and
writes greengrass-build/recipes/recipe.yaml (publish re-reads the file of the same name as the
project's recipe.yaml) with the name, version and author filled in and one manifest per
architecture built. The shell handlers of handlers/ go into handlers.zip (files at the zip root,
mode 0755, fixed timestamps so that the same sources give the same archive); the recipe
unarchives it and its install step copies each handler into the handler directory.

Environment:
  GGJH_TARGETS            "triple=arch ..." (default: TARGETS); every target named here must build
  GGJH_COMPONENT_NAME     overrides the component name of gdk-config.json
  GGJH_COMPONENT_VERSION  overrides the version (gdk-config.json's; NEXT_PATCH is kept as GDK does)
  CARGO_TARGET_DIR        where cargo builds (default: target)

All default targets are static musl builds linked by rust-lld, which ships with Rust: a machine
needs only `rustup target add` for each. With the default targets, one whose Rust standard
library is not installed is skipped with one line that says how to add it (the manifest for it
is left out), so that `gdk component build` works wherever at least one is installed. A triple
with a glibc version suffix (e.g. armv7-unknown-linux-gnueabihf.2.17) builds through
cargo-zigbuild instead.
"""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARY = "greengrass-jobs-handler"
TARGETS = "x86_64-unknown-linux-musl=x86_64 aarch64-unknown-linux-musl=aarch64 armv7-unknown-linux-musleabihf=armv7"


def component():
    config = json.loads((ROOT / "gdk-config.json").read_text())
    name, body = next(iter(config["component"].items()))
    name = os.environ.get("GGJH_COMPONENT_NAME", name)
    version = os.environ.get("GGJH_COMPONENT_VERSION", body["version"])
    return name, version, body["author"]


def uses_zigbuild(triple):
    """`<triple>.<glibc version>` is cargo-zigbuild's form; plain triples link with rust-lld."""
    return "." in triple


def missing_toolchain(triple):
    """Why `triple` cannot be built here, or None when it can."""
    base = triple.split(".")[0]
    libdir = subprocess.run(
        ["rustc", "--print", "target-libdir", "--target", base],
        capture_output=True, text=True,
    )
    path = pathlib.Path(libdir.stdout.strip())
    if libdir.returncode != 0 or not any(path.glob("libstd-*.rlib")):
        return f"the Rust standard library for {base} is not installed (rustup target add {base})"
    if uses_zigbuild(triple) and shutil.which("cargo-zigbuild") is None:
        return "cargo-zigbuild is not installed (pip install ziglang; cargo install cargo-zigbuild)"
    return None


def build(triple, target_dir):
    env = dict(os.environ)
    if uses_zigbuild(triple):
        command = ["cargo", "zigbuild"]
    else:
        env[f"CARGO_TARGET_{triple.upper().replace('-', '_')}_LINKER"] = "rust-lld"
        command = ["cargo", "build"]
    command += ["--release", "--locked", "--no-default-features", "--target", triple, "--bin", BINARY]
    print("+", " ".join(command), flush=True)
    subprocess.run(command, cwd=ROOT, env=env, check=True)
    return target_dir / triple.split(".")[0] / "release" / BINARY


def zip_handlers(artifacts):
    dest = artifacts / "handlers.zip"
    with zipfile.ZipFile(dest, "w") as archive:
        for path in sorted((ROOT / "handlers").glob("*.sh")):
            info = zipfile.ZipInfo(path.name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o100755 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    print(f"artifact {dest.relative_to(ROOT)}: {dest.stat().st_size} bytes", flush=True)


def render(template, name, version, author, arches):
    text = template.replace("{COMPONENT_NAME}", name)
    text = text.replace("{COMPONENT_VERSION}", version).replace("{COMPONENT_AUTHOR}", author)

    def keep(match):
        return match.group(0) if match.group(1) in arches else ""

    text = re.sub(r"  # manifest (\S+)\n.*?  # end manifest\n", keep, text, flags=re.S)
    return text


def main():
    name, version, author = component()
    target_dir = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target_dir.is_absolute():
        target_dir = ROOT / target_dir
    explicit = "GGJH_TARGETS" in os.environ
    pairs = [p.split("=", 1) for p in os.environ.get("GGJH_TARGETS", TARGETS).split()]
    if not pairs or any(len(p) != 2 or not all(p) for p in pairs):
        sys.exit("GGJH_TARGETS must be \"triple=arch ...\", e.g. \"aarch64-unknown-linux-musl=aarch64\"")
    buildable = []
    for triple, arch in pairs:
        why = missing_toolchain(triple)
        if why is None:
            buildable.append((triple, arch))
        elif explicit:
            sys.exit(f"cannot build {arch} ({triple}): {why}")
        else:
            print(f"skipping {arch} ({triple}): {why}", flush=True)
    if not buildable:
        sys.exit("no target can be built; add one with `rustup target add x86_64-unknown-linux-musl`")
    out = ROOT / "greengrass-build"
    shutil.rmtree(out, ignore_errors=True)
    artifacts = out / "artifacts" / name / version
    artifacts.mkdir(parents=True)
    (out / "recipes").mkdir()
    arches = []
    for triple, arch in buildable:
        binary = build(triple, target_dir)
        dest = artifacts / f"{BINARY}-{arch}"
        shutil.copyfile(binary, dest)
        dest.chmod(0o755)
        arches.append(arch)
        print(f"artifact {dest.relative_to(ROOT)}: {dest.stat().st_size} bytes", flush=True)
    zip_handlers(artifacts)
    template = (ROOT / "recipe.yaml").read_text()
    (out / "recipes" / "recipe.yaml").write_text(render(template, name, version, author, arches))
    print(f"built {name} {version} for {', '.join(arches)} into greengrass-build/")


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as e:
        sys.exit(f"build failed: {e}")
