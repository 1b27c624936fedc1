"""boto3's real AWS IoT client against the emulator's control API (endpoint in GGJH_CONTROL_URL).

Creates a job for the core device GGJH_THING, waits until the component running against the
emulator has executed it, checks the execution through DescribeJobExecution and
ListJobExecutionsForThing, then exercises CancelJob and the error shapes. Prints one JSON line per
step ({"step": ..., "ok": bool, ...}) and exits non-zero if any step failed.
"""

import json
import os
import sys
import time

import boto3
from botocore.config import Config

failures = 0


def report(step, ok, **details):
    global failures
    if not ok:
        failures += 1
    print(json.dumps({"step": step, "ok": bool(ok), **details}, default=str), flush=True)


def main():
    thing = os.environ["GGJH_THING"]
    iot = boto3.client(
        "iot",
        endpoint_url=os.environ["GGJH_CONTROL_URL"],
        region_name="us-east-1",
        aws_access_key_id="emulator",
        aws_secret_access_key="emulator",
        config=Config(retries={"max_attempts": 1}),
    )
    arn = iot.create_thing(thingName="boto3-thing")["thingArn"]
    report("create_thing", arn.endswith(":thing/boto3-thing"), arn=arn)

    target = f"arn:aws:iot:us-east-1:123456789012:thing/{thing}"
    created = iot.create_job(
        jobId="boto3-add",
        targets=[target],
        document=json.dumps({"operation": "add", "a": 40, "b": 2}),
        description="created by boto3",
    )
    report("create_job", created["jobId"] == "boto3-add", job_arn=created.get("jobArn"))

    deadline = time.time() + 20
    execution = None
    while time.time() < deadline:
        execution = iot.describe_job_execution(jobId="boto3-add", thingName=thing)["execution"]
        if execution["status"] == "SUCCEEDED":
            break
        time.sleep(0.05)
    details = execution["statusDetails"].get("detailsMap", {}) if execution else {}
    report(
        "job_executed_by_component",
        execution and execution["status"] == "SUCCEEDED" and details.get("result") == "42",
        status=execution and execution["status"],
        details=details,
        started_at=execution and execution.get("startedAt"),
    )

    summaries = iot.list_job_executions_for_thing(thingName=thing, status="SUCCEEDED")["executionSummaries"]
    report("list_job_executions_for_thing", any(s["jobId"] == "boto3-add" for s in summaries), count=len(summaries))

    iot.create_job(jobId="boto3-cancel", targets=["arn:aws:iot:us-east-1:123456789012:thing/boto3-thing"], document="{}")
    iot.cancel_job(jobId="boto3-cancel", reasonCode="operator", force=False)
    job = iot.describe_job(jobId="boto3-cancel")["job"]
    execution = iot.describe_job_execution(jobId="boto3-cancel", thingName="boto3-thing")["execution"]
    report("cancel_job", job["status"] == "CANCELED" and execution["status"] == "CANCELED", job=job["status"], execution=execution["status"])

    group_arn = iot.create_thing_group(thingGroupName="boto3-fleet")["thingGroupArn"]
    iot.create_job(
        jobId="boto3-continuous",
        targets=[group_arn],
        targetSelection="CONTINUOUS",
        document=json.dumps({"operation": "echo", "via": "group"}),
    )
    iot.add_thing_to_thing_group(thingGroupName="boto3-fleet", thingName=thing)
    deadline = time.time() + 20
    status = None
    while time.time() < deadline:
        status = iot.describe_job_execution(jobId="boto3-continuous", thingName=thing)["execution"]["status"]
        if status == "SUCCEEDED":
            break
        time.sleep(0.05)
    report("continuous_job_on_group_join", status == "SUCCEEDED", status=status)

    try:
        iot.describe_job_execution(jobId="missing", thingName=thing)
        report("not_found_error", False, error="no error")
    except iot.exceptions.ResourceNotFoundException as e:
        report("not_found_error", True, error=type(e).__name__)

    try:
        iot.create_job(jobId="boto3-add", targets=[target], document="{}")
        report("already_exists_error", False, error="no error")
    except iot.exceptions.ResourceAlreadyExistsException as e:
        report("already_exists_error", True, error=type(e).__name__)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        report("exception", False, error=f"{type(e).__name__}: {e}")
    sys.exit(1 if failures else 0)
