"""Captures the bytes the real oslo.messaging client sends for alarms whose
reason data holds what only Python's json writes: NaN, Infinity, -Infinity,
integers beyond 64 bits and lone surrogates. Made the fixtures in
tests/fixtures/python-json/; run again to make them anew.

Usage: capture_python_json.py TRANSPORT_URL OUT_DIR

TRANSPORT_URL names a virtual host of its own (the queues are read empty
after). Each message is sent as Aodh's evaluators send it, then read back
raw with kombu, the AMQP client under oslo.messaging, and written as
NAME.body.bin (the exact body) and NAME.meta.json (exchange, routing key,
properties).
"""

import json
import os
import sys
import time
import warnings

warnings.simplefilter("ignore")

import kombu  # noqa: E402
from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402

SINK = "http://127.0.0.1:8080/alarm"

THRESHOLD = "Transition to alarm due to 1 samples outside threshold, most recent: "


def alarm(alarm_id, reason, reason_data, name="cpu_high"):
    return {
        "actions": [SINK, "log://"],
        "alarm_id": alarm_id,
        "alarm_name": name,
        "severity": "critical",
        "previous": "ok",
        "current": "alarm",
        "reason": reason,
        "reason_data": reason_data,
    }


def threshold(most_recent):
    return {"type": "threshold", "disposition": "outside", "count": 1, "most_recent": most_recent}


# Sent as alarm.update notifications (Aodh 2.x and later).
NOTIFICATIONS = {
    # A Prometheus ratio of +Inf (a division by zero), and 0/0.
    "infinity": alarm("5b0c7b4e-0d4e-4c8e-9a1e-000000000001", THRESHOLD + "inf", threshold(float("inf"))),
    "nan": alarm("5b0c7b4e-0d4e-4c8e-9a1e-000000000002", THRESHOLD + "nan", threshold(float("nan"))),
    "negative-infinity": alarm(
        "5b0c7b4e-0d4e-4c8e-9a1e-000000000003", THRESHOLD + "-inf", threshold(float("-inf"))
    ),
    "big-integer": alarm(
        "5b0c7b4e-0d4e-4c8e-9a1e-000000000004",
        THRESHOLD + "18446744073709551616",
        threshold(18446744073709551616),
    ),
    "lone-surrogate": alarm(
        "5b0c7b4e-0d4e-4c8e-9a1e-000000000005",
        "Event <compute.instance.update> hit the query <query>.",
        {"type": "event", "event": {"event_type": "compute.instance.update", "message_id": "m-\ud800",
                                    "traits": [["display_name", 1, "vm-\ud800"]]}},
    ),
    # Every one in one event alarm, as an event's traits can carry them.
    "event-all": alarm(
        "5b0c7b4e-0d4e-4c8e-9a1e-000000000006",
        "Event <compute.metrics.update> hit the query <query>.",
        {"type": "event", "event": {"event_type": "compute.metrics.update", "message_id": "m-6",
                                    "traits": [["ratio", 3, float("nan")], ["max", 3, float("inf")],
                                               ["min", 3, float("-inf")], ["count", 2, 10 ** 20],
                                               ["note", 1, "\udc00 caf\u00e9"]]}},
    ),
    # A lone surrogate where the plugin receives a string: U+FFFD there.
    "lone-surrogate-name": alarm(
        "5b0c7b4e-0d4e-4c8e-9a1e-000000000007", THRESHOLD + "97.0", threshold(97.0), name="cpu-\ud800"
    ),
}

# Sent as an RPC cast of notify_alarm (Ceilometer, Aodh 1.x).
CASTS = {
    "cast-all": alarm(
        "5b0c7b4e-0d4e-4c8e-9a1e-000000000008",
        THRESHOLD + "nan",
        {"type": "threshold", "disposition": "outside", "count": 18446744073709551616,
         "most_recent": float("nan"), "samples": [float("inf"), float("-inf"), -0.0, 1e16], "q": "\ud800"},
    ),
}


def next_message(queue):
    """The queue's next message, waited for up to 10 s."""
    for _ in range(100):
        message = queue.get(no_ack=True)
        if message is not None:
            return message
        time.sleep(0.1)
    raise SystemExit(f"nothing arrived in {queue.name}")


def write(out, name, message, kind):
    props = message.properties
    meta = {
        "exchange": message.delivery_info["exchange"],
        "routing_key": message.delivery_info["routing_key"],
        "properties": {
            "content_type": message.content_type,
            "content_encoding": message.content_encoding,
            "delivery_mode": props.get("delivery_mode"),
            "expiration": props.get("expiration"),
            "priority": props.get("priority", 0),
            "headers": message.headers or {},
        },
        "sent_with": {"oslo.messaging": oslo_messaging.__name__, "kind": kind},
    }
    # py-amqp hands over the body decoded from its content encoding, UTF-8:
    # encoded again, it is the bytes that came (oslo writes ASCII).
    body = message.body if isinstance(message.body, bytes) else message.body.encode("utf-8")
    with open(os.path.join(out, name + ".body.bin"), "wb") as body_file:
        body_file.write(body)
    with open(os.path.join(out, name + ".meta.json"), "w") as meta_file:
        json.dump(meta, meta_file, indent=2, sort_keys=True)
        meta_file.write("\n")


def main():
    url, out = sys.argv[1:3]
    os.makedirs(out, exist_ok=True)
    conf = cfg.CONF
    conf([], project="tocsin-capture")
    broker = kombu.Connection(url.replace("rabbit://", "amqp://", 1))
    channel = broker.channel()
    # The RPC server declares the topic queue; stand in for it.
    casts = kombu.Queue("alarm_notifier", kombu.Exchange("ceilometer", "topic", durable=False),
                        routing_key="alarm_notifier", durable=False)(channel)
    casts.declare()

    transport = oslo_messaging.get_rpc_transport(conf, url)
    client = oslo_messaging.get_rpc_client(
        transport, oslo_messaging.Target(exchange="ceilometer", topic="alarm_notifier")
    )
    for name, data in CASTS.items():
        client.cast({}, "notify_alarm", data=data)
        write(out, name, next_message(casts), "cast")
    transport.cleanup()

    conf.set_override("control_exchange", "aodh")
    transport = oslo_messaging.get_notification_transport(conf, url)
    notifier = oslo_messaging.Notifier(
        transport, driver="messagingv2", publisher_id="alarming.evaluator", topics=["alarming"]
    )
    samples = kombu.Queue("alarming.sample", kombu.Exchange("aodh", "topic", durable=False),
                          routing_key="alarming.sample", durable=False)(channel)
    for name, data in NOTIFICATIONS.items():
        notifier.sample({}, "alarm.update", data)
        write(out, name, next_message(samples), "notification")
    transport.cleanup()
    broker.release()
    print(f"captured {len(CASTS) + len(NOTIFICATIONS)}")


if __name__ == "__main__":
    main()
