"""Checks what `recipe/gdk_build.py` left, the way `gdk component build` and `publish` would need
it, applying GDK 1.6.2's documented rules without GDK installed:

- the project recipe: exactly one of recipe.yaml / recipe.json beside gdk-config.json (GDK reads
  no other name or folder), here recipe.yaml;
- greengrass-build/artifacts/<name>/<version>/greengrass-jobs-handler-<arch>: executable, an ELF
  for that architecture, stripped binary size within budget;
- greengrass-build/recipes/recipe.yaml (publish re-reads the file named like the project recipe):
  valid against GDK's recipe schema (keys lower-cased first, as GDK does), name and version as
  configured, one manifest per artifact, artifact URIs in the form publish rewrites, no
  placeholder left, and selected with the same steps by the Java nucleus and nucleus lite
  (recipe_runtimes.py);
- gdk-config.json: valid against GDK's config schema, its version equal to Cargo.toml's.

Usage: check_gdk_build.py <schemas dir>. Prints one line per check and "N passed, N failed".
"""

import json
import pathlib
import re
import sys

import jsonschema
import yaml

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import recipe_runtimes  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCHEMAS = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "reference" / "gdk-schemas"
EXPECTED_MACHINE = {"x86_64": 0x3E, "aarch64": 0xB7, "armv7": 0x28}
PLATFORM = {"x86_64": "amd64", "aarch64": "aarch64", "armv7": "arm"}
MAX_BYTES = 1_500_000
# Nucleus lite reads a stored recipe into a buffer of this many bytes.
MAX_RECIPE_BYTES = 8196
passed = failed = 0


def check(name, ok, detail=""):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")


def lower_keys(value):
    if isinstance(value, dict):
        return {k.lower(): lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [lower_keys(v) for v in value]
    return value


config = json.loads((ROOT / "gdk-config.json").read_text())
try:
    jsonschema.validate(config, json.loads((SCHEMAS / "config_schema.json").read_text()))
    check("gdk-config.json matches GDK's config schema", True)
except jsonschema.ValidationError as e:
    check("gdk-config.json matches GDK's config schema", False, e.message)
name, body = next(iter(config["component"].items()))
version = body["version"]
cargo_version = re.search(r'^version = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M).group(1)
check("gdk-config.json version equals Cargo.toml's", version in (cargo_version, "NEXT_PATCH"), f"{version} vs {cargo_version}")
check("gdk-config.json uses the custom build command", body["build"] == {"build_system": "custom", "custom_build_command": ["python3", "recipe/gdk_build.py"]})

project_recipes = [n for n in ("recipe.yaml", "recipe.json") if (ROOT / n).is_file()]
check("GDK finds the project recipe: recipe.yaml alone beside gdk-config.json", project_recipes == ["recipe.yaml"], str(project_recipes))

build = ROOT / "greengrass-build"
artifacts = build / "artifacts" / name / version
files = sorted(artifacts.glob("greengrass-jobs-handler-*"))
check("artifacts in greengrass-build/artifacts/<name>/<version>/", bool(files), str(artifacts))
arches = []
for f in files:
    arch = f.name.rsplit("-", 1)[1]
    arches.append(arch)
    header = f.read_bytes()[:20]
    machine = int.from_bytes(header[18:20], "little")
    check(f"{f.name} is an ELF for {arch}", header[:4] == b"\x7fELF" and machine == EXPECTED_MACHINE.get(arch), hex(machine))
    check(f"{f.name} is executable", f.stat().st_mode & 0o100 != 0)
    size = f.stat().st_size
    check(f"{f.name} is within {MAX_BYTES} bytes", size <= MAX_BYTES, f"{size} bytes")

built_recipes = sorted(p.name for p in (build / "recipes").glob("*"))
check("publish finds greengrass-build/recipes/recipe.yaml (the project recipe's name)", built_recipes == ["recipe.yaml"], str(built_recipes))
recipe_text = (build / "recipes" / "recipe.yaml").read_text()
recipe = yaml.safe_load(recipe_text)
check(f"recipe within nucleus lite's {MAX_RECIPE_BYTES}-byte recipe buffer", len(recipe_text.encode()) <= MAX_RECIPE_BYTES, f"{len(recipe_text.encode())} bytes")
runtime_problems = recipe_runtimes.problems(recipe, arches)
check("the Java nucleus and nucleus lite select each built architecture's manifest and steps", not runtime_problems, "; ".join(runtime_problems))
try:
    jsonschema.validate(lower_keys(recipe), json.loads((SCHEMAS / "recipe_schema.json").read_text()))
    check("recipe matches GDK's recipe schema", True)
except jsonschema.ValidationError as e:
    check("recipe matches GDK's recipe schema", False, e.message)
check("recipe name and version", recipe["ComponentName"] == name and recipe["ComponentVersion"] == version)
check("no template placeholder left", not re.search(r"\{COMPONENT_(NAME|VERSION|AUTHOR)\}", recipe_text))
manifests = recipe["Manifests"]
check("one manifest per artifact", len(manifests) == len(files), f"{len(manifests)} manifests, {len(files)} artifacts")
for arch in arches:
    found = [m for m in manifests if m["Artifacts"][0]["URI"].endswith(f"-{arch}")]
    check(f"a manifest for {arch}", len(found) == 1)
    if not found:
        continue
    m = found[0]
    uri = m["Artifacts"][0]["URI"]
    check(f"manifest for {arch}", m["Platform"] == {"os": "linux", "architecture": PLATFORM[arch], "runtime": "*"}, str(m["Platform"]))
    check(f"{arch} artifact URI", uri == f"s3://BUCKET_NAME/COMPONENT_NAME/COMPONENT_VERSION/greengrass-jobs-handler-{arch}", uri)
    check(f"{arch} artifact is executable by its owner", m["Artifacts"][0]["Permission"]["Execute"] == "OWNER")
    check(f"{arch} run execs the binary", m["Lifecycle"].get("run") == f"exec {{artifacts:path}}/greengrass-jobs-handler-{arch}")
    check(f"{arch} install creates the handler and journal directories", "{work:path}/handlers" in m["Lifecycle"].get("install", ""))
    check(f"{arch} lifecycle keys are lowercase (nucleus lite matches them exactly)", all(k == k.lower() for k in m["Lifecycle"]), str(list(m["Lifecycle"])))
acl = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]
check("accessControl covers mqttproxy and pubsub", set(acl) == {"aws.greengrass.ipc.mqttproxy", "aws.greengrass.ipc.pubsub"})
ids = [pid for service in acl.values() for pid in service]
check("policy ids are prefixed with the component name", all(i.startswith(f"{name}:") for i in ids), str(ids))

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
