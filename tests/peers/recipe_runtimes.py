"""Which manifest and which lifecycle steps each Greengrass runtime takes from a recipe, by the
rules each runtime applies, so that a recipe is checked against both without running either.

The Java nucleus (aws.greengrass.Nucleus):
- device platform: os `linux`, architecture `amd64` | `aarch64` | `arm` | `x86` (from the JVM's
  os.arch), `architecture.detail` only for armv6l/armv7l/armv8l; no `runtime` attribute;
- the first manifest whose every Platform entry is satisfied wins. An entry is satisfied when its
  value is `*` (or `all`/`any` for os and architecture), a `/regex/` matching the device's value,
  or equal to it; a key the device does not have is satisfied only by `*`. No Platform matches
  any device;
- recipe keys and lifecycle step names are case-insensitive (`Run`, `run`).

Nucleus lite (aws.greengrass.NucleusLite, 2.3 and later):
- device platform: runtime `aws_nucleus_lite`, os `linux`, architecture from its own build
  (`amd64`, `x86`, `aarch64`, `arm`, `riscv64`);
- a manifest without `Platform` is an error; one without `runtime`, or with a runtime other than
  `*` / `aws_nucleus_lite`, is skipped; os must be `linux`, `*` or `all` (no os: skipped);
  architecture must be absent, `*`, or equal (no regex); the first one with a non-empty
  `Lifecycle` wins;
- keys are case-sensitive: `Manifests`, `Platform`, `Lifecycle`, `Artifacts`, and the lowercase
  steps `install`, `startup`, `run`; a step is a string or a map with `Script`.

Usage: recipe_runtimes.py RECIPE=ARCH,ARCH... [RECIPE=...]   (ARCH: x86_64, aarch64, armv7)
       recipe_runtimes.py --self-test RECIPE   (mutations the check must reject)
Prints one line per check and "N passed, N failed"; exits 1 on any failure.
"""

import copy
import re
import sys

import yaml

# The device architectures the component ships for: (artifact suffix, Java label, lite label).
DEVICES = {
    "x86_64": {"classic": {"os": "linux", "architecture": "amd64"}, "lite": "amd64"},
    "aarch64": {"classic": {"os": "linux", "architecture": "aarch64"}, "lite": "aarch64"},
    "armv7": {
        "classic": {"os": "linux", "architecture": "arm", "architecture.detail": "armv7l"},
        "lite": "arm",
    },
}
LITE_STEPS = ("install", "startup", "run")


class RecipeError(Exception):
    """The runtime would refuse the recipe as a whole."""


def get_ci(mapping, key):
    """A case-insensitive lookup, as the Java nucleus does for recipe and lifecycle keys."""
    if not isinstance(mapping, dict):
        return None
    for k, v in mapping.items():
        if isinstance(k, str) and k.lower() == key.lower():
            return v
    return None


def classic_attribute_ok(name, label, template):
    template = None if template is None else str(template)
    if template is None or template == "*":
        return True
    if not label:
        return False
    if len(template) >= 2 and template.startswith("/") and template.endswith("/"):
        return re.fullmatch(template[1:-1], label) is not None
    if name in ("os", "architecture") and template in ("all", "any"):
        return True
    if not re.match(r"[a-zA-Z0-9]", template):
        return False
    return template == label


def classic_select(recipe, device):
    """Index of the manifest the Java nucleus picks on `device`, or None."""
    for i, manifest in enumerate(get_ci(recipe, "Manifests") or []):
        platform = get_ci(manifest, "Platform") or {}
        if all(classic_attribute_ok(k, device.get(k), v) for k, v in platform.items()):
            return i
    return None


def classic_step(manifest, step):
    value = get_ci(get_ci(manifest, "Lifecycle") or {}, step)
    if isinstance(value, dict):
        value = get_ci(value, "Script")
    return value if isinstance(value, str) else None


def lite_select(recipe, arch):
    """Index of the manifest nucleus lite picks on a device of `arch`, or None."""
    manifests = recipe.get("Manifests")
    if not isinstance(manifests, list):
        raise RecipeError("no Manifests list (nucleus lite: keys are case-sensitive)")
    for i, manifest in enumerate(manifests):
        if not isinstance(manifest, dict) or not isinstance(manifest.get("Platform"), dict):
            raise RecipeError(f"manifest {i} has no Platform map (nucleus lite: 'Platform not provided')")
        platform = manifest["Platform"]
        if platform.get("runtime") not in ("*", "aws_nucleus_lite"):
            continue
        os_name = platform.get("os")
        if os_name is None or os_name not in ("linux", "*", "all"):
            continue
        architecture = platform.get("architecture") or ""
        if architecture not in ("", "*", arch):
            continue
        lifecycle = manifest.get("Lifecycle")
        if isinstance(lifecycle, dict) and lifecycle:
            return i
    return None


def lite_step(manifest, step):
    value = (manifest.get("Lifecycle") or {}).get(step)
    if isinstance(value, dict):
        value = value.get("Script")
    return value if isinstance(value, str) else None


def problems(recipe, arches):
    """What would go wrong on either runtime for the architectures the recipe should serve
    (`arches`) and for the others (which must select nothing rather than a wrong binary)."""
    found = []
    manifests = get_ci(recipe, "Manifests") or []
    for arch, device in DEVICES.items():
        classic = classic_select(recipe, device["classic"])
        try:
            lite = lite_select(recipe, device["lite"])
        except RecipeError as e:
            found.append(f"{arch}: nucleus lite refuses the recipe: {e}")
            continue
        if arch not in arches:
            for runtime, index in (("the Java nucleus", classic), ("nucleus lite", lite)):
                if index is not None:
                    found.append(f"{arch}: {runtime} selects manifest {index} although no {arch} artifact is built")
            continue
        if classic is None:
            found.append(f"{arch}: the Java nucleus selects no manifest")
        if lite is None:
            found.append(f"{arch}: nucleus lite selects no manifest (needs runtime \"*\" or \"aws_nucleus_lite\", exact os/architecture)")
        if classic is None or lite is None:
            continue
        if classic != lite:
            found.append(f"{arch}: the Java nucleus selects manifest {classic}, nucleus lite manifest {lite}")
        manifest = manifests[lite]
        binary = f"greengrass-jobs-handler-{arch}"
        uris = [a.get("URI", "") for a in manifest.get("Artifacts") or [] if isinstance(a, dict)]
        if not any(u.endswith("/" + binary) for u in uris):
            found.append(f"{arch}: the selected manifest has no {binary} artifact ({uris})")
        for runtime, step in (("the Java nucleus", classic_step), ("nucleus lite", lite_step)):
            install, run = step(manifest, "install"), step(manifest, "run")
            if install is None:
                found.append(f"{arch}: {runtime} finds no install step (nucleus lite knows only lowercase keys)")
            if run != f"exec {{artifacts:path}}/{binary}":
                found.append(f"{arch}: {runtime} runs {run!r}, not exec {{artifacts:path}}/{binary}")
    return found


def mutations(recipe):
    """Recipes each rule of the check must reject: (name, mutated recipe)."""
    def each_manifest(change):
        r = copy.deepcopy(recipe)
        for m in r["Manifests"]:
            change(m)
        return r

    def capitalise(m):
        m["Lifecycle"] = {k[0].upper() + k[1:]: v for k, v in m["Lifecycle"].items()}

    def swap_first_two(r):
        r = copy.deepcopy(r)
        first, second = r["Manifests"][0]["Lifecycle"], r["Manifests"][1]["Lifecycle"]
        r["Manifests"][0]["Lifecycle"], r["Manifests"][1]["Lifecycle"] = second, first
        return r

    return [
        ("manifests without runtime", each_manifest(lambda m: m["Platform"].pop("runtime", None))),
        ("runtime aws_nucleus_lite only", each_manifest(lambda m: m["Platform"].update(runtime="aws_nucleus_lite"))),
        ("capitalised lifecycle keys", each_manifest(capitalise)),
        ("architecture as a regex", each_manifest(lambda m: m["Platform"].update(architecture="/" + m["Platform"]["architecture"] + "/"))),
        ("a manifest without Platform", each_manifest(lambda m: m.pop("Platform"))),
        ("lifecycles of two architectures swapped", swap_first_two(recipe)),
    ]


def arches_in(recipe):
    """The architectures whose artifacts the recipe's manifests name."""
    names = []
    for m in get_ci(recipe, "Manifests") or []:
        for a in get_ci(m, "Artifacts") or []:
            match = re.search(r"greengrass-jobs-handler-(\w+)$", a.get("URI", ""))
            if match:
                names.append(match.group(1))
    return names


def main(argv):
    passed = failed = 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        passed, failed = passed + ok, failed + (not ok)
        print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}")

    if argv[:1] == ["--self-test"]:
        recipe = yaml.safe_load(open(argv[1]).read())
        arches = arches_in(recipe)
        check(f"{argv[1]} passes as it is", not problems(recipe, arches), "; ".join(problems(recipe, arches)))
        for name, mutated in mutations(recipe):
            found = problems(mutated, arches)
            check(f"rejected: {name}", bool(found), found[0] if found else "accepted")
    else:
        for arg in argv:
            path, _, wanted = arg.partition("=")
            recipe = yaml.safe_load(open(path).read())
            arches = [a for a in wanted.split(",") if a]
            found = problems(recipe, arches)
            check(f"{path}: both runtimes select the {', '.join(arches)} manifests and their steps", not found, "; ".join(found))
    print(f"{passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
