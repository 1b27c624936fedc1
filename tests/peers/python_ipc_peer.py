"""The real Python Greengrass IPC client (awsiotsdk's GreengrassCoreIPCClientV2) against a
server on the socket named by AWS_GG_NUCLEUS_DOMAIN_SOCKET_FILEPATH_FOR_COMPONENT.

Prints one JSON line per step ({"step": ..., "ok": bool, ...}) and exits non-zero if any step
failed. Driven by tests/python_interop.rs, which also checks the server side of each step.
"""

import json
import os
import queue
import sys

from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
from awsiot.greengrasscoreipc import connect
from awsiot.greengrasscoreipc import model

TIMEOUT = 5.0
failures = 0


def report(step, ok, **details):
    global failures
    if not ok:
        failures += 1
    print(json.dumps({"step": step, "ok": ok, **details}), flush=True)


def main():
    client = GreengrassCoreIPCClientV2()
    report("connect", True)

    received = queue.Queue()
    resp_fut, _op = client.subscribe_to_iot_core_async(
        topic_name="interop/#",
        qos=model.QOS.AT_LEAST_ONCE,
        on_stream_event=lambda event: received.put(event.message),
    )
    resp_fut.result(TIMEOUT)
    report("subscribe_to_iot_core", True)

    client.publish_to_iot_core_async(
        topic_name="interop/python",
        qos=model.QOS.AT_LEAST_ONCE,
        payload=b"hello from python",
    ).result(TIMEOUT)
    report("publish_to_iot_core", True)

    message = received.get(timeout=TIMEOUT)
    report(
        "receive_iot_core",
        message.topic_name == "interop/python" and message.payload == b"hello from python",
        topic=message.topic_name,
        payload=message.payload.decode("utf-8", "replace"),
    )

    client.update_state_async(state=model.ReportedLifecycleState.RUNNING).result(TIMEOUT)
    report("update_state", True)

    config = client.get_configuration_async(key_path=["greeting"]).result(TIMEOUT)
    report("get_configuration", config.value == {"greeting": "hi"}, value=config.value)

    try:
        client.get_configuration_async(key_path=["missing"]).result(TIMEOUT)
        report("configuration_not_found", False, error="no error raised")
    except model.ResourceNotFoundError as e:
        report("configuration_not_found", True, error=type(e).__name__)

    local = queue.Queue()
    fut, _op2 = client.subscribe_to_topic_async(
        topic="local/interop", on_stream_event=lambda event: local.put(event)
    )
    fut.result(TIMEOUT)
    client.publish_to_topic_async(
        topic="local/interop",
        publish_message=model.PublishMessage(json_message=model.JsonMessage(message={"n": 7})),
    ).result(TIMEOUT)
    event = local.get(timeout=TIMEOUT)
    got = event.json_message.message if event.json_message else None
    report("local_pubsub", got == {"n": 7}, message=got)

    statuses = queue.Queue()
    status_fut, _op3 = client.subscribe_to_iot_core_connection_status_async(
        on_stream_event=lambda event: statuses.put(event.connection_status_event.status),
    )
    status_fut.result(TIMEOUT)
    first = statuses.get(timeout=TIMEOUT)
    report("connection_status", first == "CONNECTED", status=first)

    client.close()

    try:
        bad = connect(authtoken="definitely-not-the-token", timeout=TIMEOUT)
        bad.close()
        report("rejected_token", False, error="connection accepted")
    except Exception as e:  # AccessDeniedError or AWS_IO_SOCKET_CLOSED: a race in the SDK
        name = type(e).__name__
        text = str(e)
        ok = "AccessDenied" in name or "AccessDenied" in text or "SOCKET_CLOSED" in text
        report("rejected_token", ok, error=f"{name}: {text}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:
        report("exception", False, error=f"{type(e).__name__}: {e}")
    sys.exit(1 if failures else 0)
