#!/bin/sh
# install-packages.sh USER "PACKAGE [PACKAGE...]"  (AWS-Install-Application)
# remove-packages.sh USER "PACKAGE [PACKAGE...]"   (AWS-Remove-Application)
#
# One script under both names (remove-packages.sh links here): the name it is run as says
# whether it installs or removes packages, with the device's package manager (apt-get, dnf,
# yum or apk, the first one found on PATH). USER is the step's runAsUser (the component has already switched to it).
# The packages come as one space-separated argument, or several; each name is checked (letters,
# digits and . + _ : = ~ -, not starting with '-') and passed as its own argument, never through
# a shell command line.
set -u
name=$(basename "$0" .sh)

fail() {
    echo "$name: $*" >&2
    exit 1
}

case $name in
    install-packages) apt=install dnf=install apk=add done=installed ;;
    remove-packages) apt=remove dnf=remove apk=del done=removed ;;
    *) fail "run as install-packages.sh or remove-packages.sh" ;;
esac
[ "$#" -ge 1 ] || fail "usage: $name.sh USER PACKAGES"
shift
set -f
# shellcheck disable=SC2086,SC2048  # splitting the space-separated list is the point
set -- $*
set +f
[ "$#" -ge 1 ] || fail "no packages given"
for p in "$@"; do
    case $p in
        -* | *[!A-Za-z0-9.+_:=~-]*) fail "refusing package name '$p'" ;;
    esac
done

if command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get "$apt" -y -q "$@"
elif command -v dnf >/dev/null 2>&1; then
    dnf "$dnf" -y -q "$@"
elif command -v yum >/dev/null 2>&1; then
    yum "$dnf" -y -q "$@"
elif command -v apk >/dev/null 2>&1; then
    apk "$apk" --quiet "$@"
else
    fail "no supported package manager (apt-get, dnf, yum, apk) found"
fi
status=$?
[ "$status" -eq 0 ] || fail "the package manager failed (exit code $status)"
echo "$done: $*"
