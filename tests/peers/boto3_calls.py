"""boto3 calls on request: a line-oriented peer for tests that interleave boto3 with what they
do on the device side.

Reads one JSON request a line on stdin and answers one JSON line on stdout:
- {"client": "iot"|"s3", "method": NAME, "kwargs": {...}} calls the boto3 client method (`iot`
  on GGJH_CONTROL_URL, `s3` on GGJH_S3_URL with path-style addressing) and answers {"ok": true, "result": ...} or
  {"ok": false, "code": ..., "message": ...} with the service's error code (or
  "ParamValidationError" when boto3 refuses the parameters before sending them);
- {"wait_execution": JOB_ID, "thing": THING, "timeout": SECONDS} polls DescribeJobExecution
  until the execution is terminal and answers {"ok": true, "result": execution};
- {"advance_clock": SECONDS} posts /emulator/clock/advance on the control listener.
Bytes for `Body` are given as a string. Ends at end of input.
"""

import json
import os
import sys
import time
import urllib.request

from botocore.exceptions import ClientError, ParamValidationError

from boto3_control import client

TERMINAL = {"SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "REMOVED"}


def clients():
    made = {"iot": client("iot", "GGJH_CONTROL_URL")}
    if "GGJH_S3_URL" in os.environ:
        made["s3"] = client("s3", "GGJH_S3_URL", s3={"addressing_style": "path"})
    return made


def wait_execution(iot, job_id, thing, timeout):
    deadline = time.monotonic() + timeout
    while True:
        execution = iot.describe_job_execution(jobId=job_id, thingName=thing)["execution"]
        if execution["status"] in TERMINAL or time.monotonic() > deadline:
            return execution
        time.sleep(0.05)


def advance_clock(seconds):
    url = f"{os.environ['GGJH_CONTROL_URL']}/emulator/clock/advance?seconds={seconds}"
    with urllib.request.urlopen(urllib.request.Request(url, method="POST")) as reply:
        return json.loads(reply.read() or b"{}")


def answer(made, request):
    try:
        if "wait_execution" in request:
            result = wait_execution(
                made["iot"], request["wait_execution"], request["thing"], request.get("timeout", 30)
            )
        elif "advance_clock" in request:
            result = advance_clock(request["advance_clock"])
        else:
            kwargs = dict(request.get("kwargs", {}))
            if isinstance(kwargs.get("Body"), str):
                kwargs["Body"] = kwargs["Body"].encode()
            result = getattr(made[request["client"]], request["method"])(**kwargs)
            result.pop("ResponseMetadata", None)
        return {"ok": True, "result": result}
    except ClientError as e:
        error = e.response.get("Error", {})
        return {"ok": False, "code": error.get("Code"), "message": error.get("Message")}
    except ParamValidationError as e:
        return {"ok": False, "code": "ParamValidationError", "message": str(e)}


def main():
    made = clients()
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(answer(made, json.loads(line)), default=str), flush=True)


if __name__ == "__main__":
    main()
