#!/bin/sh
# reboot.sh USER  (AWS-Reboot)
#
# Asks greengrass-jobs-handler to reboot the device. The handler does not reboot by itself:
# it exits with the code the component gives it in GGJH_REBOOT_EXIT_CODE, and the component
# then records the request in its journal, runs its rebootCommand, and reports the job
# SUCCEEDED once the device is back. Without rebootCommand the job is REJECTED.
set -u

code=${GGJH_REBOOT_EXIT_CODE:-}
case $code in
    '' | *[!0-9]*)
        echo "reboot: not run by greengrass-jobs-handler (GGJH_REBOOT_EXIT_CODE is not set)" >&2
        exit 1
        ;;
esac
echo "asking the component to reboot the device"
exit "$code"
