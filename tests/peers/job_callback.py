"""The job callback function of recipe/cloud/job-callback.yaml, run from the template's own
inline code against job execution events, with recording stand-ins for the IoT and Step
Functions clients (botocore's ClientError for the service's refusals).

Events are read as JSON lines from the file named by GGJH_JOB_EVENTS when set (events the
emulator published), else the documented shape is used. Exit status 0 when every check passed.
"""
import json
import os
import sys
import types
import unittest

import yaml
from botocore.exceptions import ClientError

TEMPLATE = os.path.join(os.path.dirname(__file__), "..", "..", "recipe", "cloud", "job-callback.yaml")


def function_source():
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    with open(TEMPLATE) as f:
        template = yaml.load(f, Loader=Loader)
    return template["Resources"]["CallbackFunction"]["Properties"]["Code"]["ZipFile"]


def load_function(token_key="taskToken"):
    os.environ["TOKEN_KEY"] = token_key
    module = types.ModuleType("index")
    exec(compile(function_source(), "index.py", "exec"), module.__dict__)
    return module


class Recorder:
    """A client stand-in: records each call, answers from `answers` (a value or an exception)."""

    def __init__(self, answers=None):
        self.calls = []
        self.answers = answers or {}

    def __getattr__(self, name):
        def call(**kwargs):
            self.calls.append((name, kwargs))
            answer = self.answers.get(name, {})
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call


def documented_event(status, job_id, thing, details):
    return {
        "eventType": "JOB_EXECUTION",
        "eventId": "cca89fa5-8a8f-4aa2-ad4a-be7e3dc2a2a3",
        "timestamp": 1764590000,
        "operation": status.lower(),
        "jobId": job_id,
        "thingArn": "arn:aws:iot:us-east-1:123456789012:thing/" + thing,
        "status": status,
        "statusDetails": details,
    }


def events():
    path = os.environ.get("GGJH_JOB_EVENTS")
    if path:
        with open(path) as f:
            loaded = [json.loads(line) for line in f if line.strip()]
        by_status = {e["status"]: e for e in loaded if e.get("eventType") == "JOB_EXECUTION"}
        return by_status["SUCCEEDED"], by_status["FAILED"]
    return (
        documented_event("SUCCEEDED", "callback-add-1", "core-1", {"result": "57"}),
        documented_event("FAILED", "callback-fail-1", "core-1", {"reason": "boom"}),
    )


def gone(code):
    return ClientError({"Error": {"Code": code, "Message": "gone"}}, "SendTaskSuccess")


class JobCallback(unittest.TestCase):
    def setUp(self):
        self.succeeded, self.failed = events()
        self.fn = load_function()
        self.sfn = Recorder()
        self.iot = Recorder({"get_job_document": {"document": json.dumps(
            {"operation": "add", "a": 15, "b": 42, "taskToken": "token-from-document"})}})
        self.fn.CLIENTS.update({"stepfunctions": self.sfn, "iot": self.iot})

    def test_success_sends_the_status_details_with_the_documents_token(self):
        answer = self.fn.handler(self.succeeded, None)
        self.assertEqual(answer, {"answered": True, "status": "SUCCEEDED"})
        self.assertEqual(self.iot.calls, [("get_job_document", {"jobId": self.succeeded["jobId"]})])
        [(name, kwargs)] = self.sfn.calls
        self.assertEqual(name, "send_task_success")
        self.assertEqual(kwargs["taskToken"], "token-from-document")
        output = json.loads(kwargs["output"])
        self.assertEqual(output["status"], "SUCCEEDED")
        self.assertEqual(output["jobId"], self.succeeded["jobId"])
        self.assertEqual(output["thingName"], self.succeeded["thingArn"].rsplit("/", 1)[-1])
        self.assertEqual(output["statusDetails"], self.succeeded["statusDetails"])

    def test_failure_sends_task_failure_named_by_status(self):
        event = dict(self.failed, statusDetails=dict(self.failed["statusDetails"], taskToken="t-details"))
        self.fn.handler(event, None)
        self.assertEqual(self.iot.calls, [], "a token in statusDetails needs no document")
        [(name, kwargs)] = self.sfn.calls
        self.assertEqual((name, kwargs["taskToken"], kwargs["error"]),
                         ("send_task_failure", "t-details", "JobExecution.FAILED"))
        cause = json.loads(kwargs["cause"])
        self.assertNotIn("taskToken", cause["statusDetails"], "the token is not echoed")
        self.assertEqual(cause["statusDetails"], self.failed["statusDetails"])

    def test_a_custom_token_key(self):
        fn = load_function("sfnToken")
        fn.CLIENTS.update({"stepfunctions": self.sfn, "iot": self.iot})
        event = dict(self.succeeded, statusDetails={"sfnToken": "custom", "result": "1"})
        fn.handler(event, None)
        self.assertEqual(self.sfn.calls[0][1]["taskToken"], "custom")

    def test_other_events_and_jobs_without_a_token_are_left_alone(self):
        job_event = {"eventType": "JOB", "jobId": "callback-x", "status": "COMPLETED"}
        self.assertEqual(self.fn.handler(job_event, None)["answered"], False)
        self.iot.answers["get_job_document"] = {"document": json.dumps({"operation": "echo"})}
        self.assertEqual(self.fn.handler(self.succeeded, None)["why"], "no task token")
        self.iot.answers["get_job_document"] = {"document": "not json"}
        self.assertEqual(self.fn.handler(self.succeeded, None)["why"], "no task token")
        self.iot.answers["get_job_document"] = {"document": json.dumps({"taskToken": 7})}
        self.assertEqual(self.fn.handler(self.succeeded, None)["why"], "no task token")
        self.assertEqual(self.sfn.calls, [])

    def test_an_answered_task_is_logged_other_refusals_raise(self):
        self.sfn.answers["send_task_success"] = gone("TaskTimedOut")
        self.assertEqual(self.fn.handler(self.succeeded, None), {"answered": False, "why": "TaskTimedOut"})
        self.sfn.answers["send_task_success"] = gone("AccessDeniedException")
        with self.assertRaises(ClientError):
            self.fn.handler(self.succeeded, None)


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() and result.testsRun > 0 else 1)
