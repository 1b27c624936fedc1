"""boto3's real AWS IoT clients against the emulator: `iot` and `iot-data` on the control
listener (GGJH_CONTROL_URL), `iot-jobs-data` on its own (GGJH_JOBS_DATA_URL), `s3` on the
emulated S3 (GGJH_S3_URL).

Creates a job for the core device GGJH_THING, waits until the component running against the
emulator has executed it, checks the execution through DescribeJobExecution and
ListJobExecutionsForThing, then exercises CancelJob and the error shapes. Prints one JSON line per
step ({"step": ..., "ok": bool, ...}) and exits non-zero if any step failed. Then drives the
routes around it: thing attributes and listings, ListJobs/UpdateJob/DeleteJob, DescribeEndpoint,
topic rules, job templates and managed templates, a device running a job through
`iot-jobs-data`, iot-data Publish, S3 buckets and objects, and the fleet: attributes,
indexing, SearchIndex, dynamic groups, shadows, event configurations and a job's rollout,
abort and scheduling configurations.
"""

import datetime
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


def client(service, url_variable, **config):
    return boto3.client(
        service,
        endpoint_url=os.environ[url_variable],
        region_name="us-east-1",
        aws_access_key_id="emulator",
        aws_secret_access_key="emulator",
        config=Config(retries={"max_attempts": 1}, **config),
    )


def main():
    thing = os.environ["GGJH_THING"]
    iot = client("iot", "GGJH_CONTROL_URL")
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

    more_control_plane(iot)
    device_over_jobs_data(iot, client("iot-jobs-data", "GGJH_JOBS_DATA_URL"))
    iot_data_and_rules(iot, client("iot-data", "GGJH_CONTROL_URL"))
    s3_objects(client("s3", "GGJH_S3_URL", s3={"addressing_style": "path"}))
    fleet(iot, client("iot-data", "GGJH_CONTROL_URL"))


def more_control_plane(iot):
    iot.create_thing(thingName="boto3-attr", attributePayload={"attributes": {"site": "north"}})
    described = iot.describe_thing(thingName="boto3-attr")
    report("describe_thing", described["attributes"] == {"site": "north"} and described["version"] == 1, thing=described)
    listed = iot.list_things(attributeName="site", attributeValue="north")["things"]
    report("list_things", [t["thingName"] for t in listed] == ["boto3-attr"], things=listed)

    jobs = [j["jobId"] for j in iot.list_jobs()["jobs"]]
    report("list_jobs", "boto3-add" in jobs and "boto3-cancel" in jobs, jobs=jobs)
    iot.create_job(jobId="boto3-update", targets=["arn:aws:iot:us-east-1:123456789012:thing/boto3-attr"], document="{}")
    iot.update_job(jobId="boto3-update", description="changed", timeoutConfig={"inProgressTimeoutInMinutes": 7})
    job = iot.describe_job(jobId="boto3-update")["job"]
    report("update_job", job.get("description") == "changed" and job["timeoutConfig"]["inProgressTimeoutInMinutes"] == 7, job=job)
    try:
        iot.delete_job(jobId="boto3-update")
        report("delete_job_needs_force", False, error="no error")
    except iot.exceptions.InvalidStateTransitionException:
        report("delete_job_needs_force", True)
    iot.delete_job(jobId="boto3-update", force=True)
    try:
        iot.describe_job(jobId="boto3-update")
        report("delete_job", False, error="still there")
    except iot.exceptions.ResourceNotFoundException:
        report("delete_job", True)

    address = iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"]
    report("describe_endpoint", "http://" + address == os.environ["GGJH_CONTROL_URL"], address=address)

    iot.create_job_template(jobTemplateId="boto3-tpl", description="t", document=json.dumps({"operation": "echo"}))
    template = iot.describe_job_template(jobTemplateId="boto3-tpl")
    listed = [t["jobTemplateId"] for t in iot.list_job_templates()["jobTemplates"]]
    iot.create_job(jobId="boto3-from-tpl", targets=["arn:aws:iot:us-east-1:123456789012:thing/boto3-attr"], jobTemplateArn=template["jobTemplateArn"])
    document = json.loads(iot.get_job_document(jobId="boto3-from-tpl")["document"])
    iot.delete_job_template(jobTemplateId="boto3-tpl")
    report(
        "job_templates",
        listed == ["boto3-tpl"] and template["document"] == json.dumps({"operation": "echo"}) and document == {"operation": "echo"},
        listed=listed,
        document=document,
    )

    managed = [t["templateName"] for t in iot.list_managed_job_templates()["managedJobTemplates"]]
    restart = iot.describe_managed_job_template(templateName="AWS-Restart-Application")
    keys = [p["key"] for p in restart["documentParameters"]]
    report("managed_job_templates", "AWS-Restart-Application" in managed and "services" in keys, managed=managed, keys=keys)


def device_over_jobs_data(iot, jobs):
    iot.create_thing(thingName="boto3-device")
    iot.create_job(
        jobId="boto3-managed",
        targets=["arn:aws:iot:us-east-1:123456789012:thing/boto3-device"],
        jobTemplateArn="arn:aws:iot:us-east-1::jobtemplate/AWS-Restart-Application:1.0",
        documentParameters={"services": "nginx"},
    )
    pending = jobs.get_pending_job_executions(thingName="boto3-device")
    report("get_pending_job_executions", [j["jobId"] for j in pending["queuedJobs"]] == ["boto3-managed"], pending=pending.get("queuedJobs"))
    started = jobs.start_next_pending_job_execution(thingName="boto3-device", statusDetails={"step": "run"})["execution"]
    document = json.dumps(started.get("jobDocument"))
    report("start_next_pending_job_execution", started["status"] == "IN_PROGRESS" and "nginx" in document, status=started["status"], document=document)
    described = jobs.describe_job_execution(thingName="boto3-device", jobId="boto3-managed")["execution"]
    report("describe_job_execution_data", described["statusDetails"] == {"step": "run"}, execution=described)
    try:
        jobs.update_job_execution(thingName="boto3-device", jobId="boto3-managed", status="SUCCEEDED", expectedVersion=99)
        report("update_job_execution_version_checked", False, error="no error")
    except jobs.exceptions.InvalidStateTransitionException:
        report("update_job_execution_version_checked", True)
    state = jobs.update_job_execution(thingName="boto3-device", jobId="boto3-managed", status="SUCCEEDED", includeJobExecutionState=True)["executionState"]
    control_view = iot.describe_job_execution(jobId="boto3-managed", thingName="boto3-device")["execution"]["status"]
    report("update_job_execution", state["status"] == "SUCCEEDED" and control_view == "SUCCEEDED", state=state, control_view=control_view)
    try:
        jobs.get_pending_job_executions(thingName="boto3-nobody")
        report("jobs_data_not_found", False, error="no error")
    except jobs.exceptions.ResourceNotFoundException:
        report("jobs_data_not_found", True)


def iot_data_and_rules(iot, data):
    iot.create_topic_rule(
        ruleName="boto3_copy",
        topicRulePayload={
            "sql": "SELECT * FROM 'boto3/in/+'",
            "actions": [{"republish": {"roleArn": "arn:aws:iam::123456789012:role/r", "topic": "boto3/out/${topic(3)}"}}],
        },
    )
    rule = iot.get_topic_rule(ruleName="boto3_copy")["rule"]
    names = [r["ruleName"] for r in iot.list_topic_rules()["rules"]]
    data.publish(topic="boto3/in/a", qos=1, payload=b'{"t": 1}')
    iot.delete_topic_rule(ruleName="boto3_copy")
    after = [r["ruleName"] for r in iot.list_topic_rules()["rules"]]
    report(
        "topic_rules_and_publish",
        rule["sql"] == "SELECT * FROM 'boto3/in/+'" and "boto3_copy" in names and "boto3_copy" not in after,
        names=names,
        after=after,
    )


def s3_objects(s3):
    s3.create_bucket(Bucket="boto3-artifacts")
    s3.put_object(Bucket="boto3-artifacts", Key="dir/hello.txt", Body=b"hello", ContentType="text/plain")
    got = s3.get_object(Bucket="boto3-artifacts", Key="dir/hello.txt")
    body = got["Body"].read()
    report("s3_put_get", body == b"hello" and got["ContentType"] == "text/plain", body=body)
    try:
        s3.get_object(Bucket="boto3-missing", Key="k")
        report("s3_no_such_bucket", False, error="no error")
    except s3.exceptions.NoSuchBucket:
        report("s3_no_such_bucket", True)



def fleet(iot, data):
    for i in range(4):
        iot.create_thing(thingName=f"fleet-{i}", attributePayload={"attributes": {"site": "north" if i < 2 else "south"}})
    iot.update_thing(thingName="fleet-3", attributePayload={"attributes": {"site": "north"}, "merge": True})
    described = iot.describe_thing(thingName="fleet-3")
    report("update_thing", described["attributes"].get("site") == "north", attributes=described["attributes"])

    iot.update_indexing_configuration(thingIndexingConfiguration={"thingIndexingMode": "REGISTRY_AND_SHADOW"})
    mode = iot.get_indexing_configuration()["thingIndexingConfiguration"]["thingIndexingMode"]
    report("indexing_configuration", mode == "REGISTRY_AND_SHADOW", mode=mode)

    shadow = {"state": {"reported": {"fw": "2"}}}
    data.update_thing_shadow(thingName="fleet-0", payload=json.dumps(shadow).encode())
    got = json.loads(data.get_thing_shadow(thingName="fleet-0")["payload"].read())
    report("thing_shadow", got["state"]["reported"] == {"fw": "2"} and got["version"] >= 1, shadow=got)

    first = iot.search_index(indexName="AWS_Things", queryString="attributes.site:north AND thingName:fleet-*", maxResults=2)
    names = [t["thingName"] for t in first["things"]]
    if first.get("nextToken"):
        rest = iot.search_index(indexName="AWS_Things", queryString="attributes.site:north AND thingName:fleet-*", nextToken=first["nextToken"])
        names += [t["thingName"] for t in rest["things"]]
    shadowed = iot.search_index(indexName="AWS_Things", queryString="shadow.reported.fw:2")
    report(
        "search_index",
        sorted(names) == ["fleet-0", "fleet-1", "fleet-3"] and [t["thingName"] for t in shadowed["things"]] == ["fleet-0"],
        names=names,
        shadowed=shadowed["things"],
    )
    try:
        iot.search_index(indexName="AWS_Things", queryString="attributes.site:(")
        report("search_index_invalid_query", False, error="no error")
    except iot.exceptions.InvalidQueryException:
        report("search_index_invalid_query", True)

    iot.create_dynamic_thing_group(thingGroupName="north", queryString="attributes.site:north AND thingName:fleet-* AND NOT thingName:fleet-1")
    group = iot.describe_thing_group(thingGroupName="north")
    members = sorted(iot.list_things_in_thing_group(thingGroupName="north")["things"])
    report(
        "dynamic_thing_group",
        group["queryString"] == "attributes.site:north AND thingName:fleet-* AND NOT thingName:fleet-1" and members == ["fleet-0", "fleet-3"],
        members=members,
    )
    data.delete_thing_shadow(thingName="fleet-0")
    try:
        data.get_thing_shadow(thingName="fleet-0")
        report("thing_shadow_deleted", False, error="still there")
    except data.exceptions.ResourceNotFoundException:
        report("thing_shadow_deleted", True)

    iot.update_event_configurations(eventConfigurations={"JOB": {"Enabled": True}, "JOB_EXECUTION": {"Enabled": True}})
    events = iot.describe_event_configurations()["eventConfigurations"]
    report("event_configurations", events["JOB"]["Enabled"] and events["JOB_EXECUTION"]["Enabled"], events=events)

    start = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1)
    iot.create_job(
        jobId="boto3-rollout",
        targets=[group["thingGroupArn"]],
        targetSelection="CONTINUOUS",
        document=json.dumps({"operation": "echo"}),
        jobExecutionsRolloutConfig={"exponentialRate": {"baseRatePerMinute": 10, "incrementFactor": 2.0, "rateIncreaseCriteria": {"numberOfNotifiedThings": 5}}},
        abortConfig={"criteriaList": [{"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 20.0, "minNumberOfExecutedThings": 10}]},
        schedulingConfig={
            "startTime": start.strftime("%Y-%m-%dT%H:%M"),
            "endTime": (start + datetime.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M"),
            "endBehavior": "CANCEL",
        },
    )
    job = iot.describe_job(jobId="boto3-rollout")["job"]
    rate = job["jobExecutionsRolloutConfig"]["exponentialRate"]
    criteria = job["abortConfig"]["criteriaList"][0]
    report(
        "job_rollout_abort_scheduling",
        job["status"] == "SCHEDULED"
        and rate["baseRatePerMinute"] == 10
        and rate["rateIncreaseCriteria"]["numberOfNotifiedThings"] == 5
        and criteria["thresholdPercentage"] == 20.0
        and job["schedulingConfig"]["endBehavior"] == "CANCEL",
        job=job,
    )


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        report("exception", False, error=f"{type(e).__name__}: {e}")
    sys.exit(1 if failures else 0)
