#!/bin/sh
# start-services.sh USER "SERVICE [SERVICE...]"    (AWS-Start-Application)
# stop-services.sh USER "SERVICE [SERVICE...]"     (AWS-Stop-Application)
# restart-services.sh USER "SERVICE [SERVICE...]"  (AWS-Restart-Application)
#
# One script under three names (stop- and restart-services.sh link here): the name it is run
# as is the action. Starts, stops or restarts services with systemctl (or, without systemd, the service command, one service at a
# time). USER is the step's runAsUser (the component has already switched to it).
# The services come as one space-separated argument, or several; each name is checked (letters,
# digits and @ . _ : -, not starting with '-') and passed as its own argument, never through a
# shell command line.
set -u
name=$(basename "$0" .sh)
action=${name%-services}

fail() {
    echo "$name: $*" >&2
    exit 1
}

case $action in
    start | stop | restart) ;;
    *) fail "run as start-, stop- or restart-services.sh" ;;
esac

[ "$#" -ge 1 ] || fail "usage: $action-services.sh USER SERVICES"
shift
set -f
# shellcheck disable=SC2086,SC2048  # splitting the space-separated list is the point
set -- $*
set +f
[ "$#" -ge 1 ] || fail "no services given"
for s in "$@"; do
    case $s in
        -* | *[!A-Za-z0-9@._:-]*) fail "refusing service name '$s'" ;;
    esac
done

if command -v systemctl >/dev/null 2>&1; then
    systemctl "$action" -- "$@" || fail "systemctl $action failed (exit code $?)"
elif command -v service >/dev/null 2>&1; then
    for s in "$@"; do
        service "$s" "$action" || fail "service $s $action failed (exit code $?)"
    done
else
    fail "neither systemctl nor service is installed"
fi
echo "$action done: $*"
