"""Sends alarms with the real oslo.messaging client, as evaluators do.

Usage: send_alarms.py TRANSPORT_URL ACTION_URL HOST

Sends, each alarm named after how it travels:
- an RPC cast of notify_alarm to topic alarm_notifier on exchange
  ceilometer (Ceilometer, Aodh 1.x), alarm id "oslo-cast";
- the same cast to one server (queue alarm_notifier.HOST), "oslo-host";
- a fanout cast (exchange alarm_notifier_fanout), "oslo-fanout";
- an alarm.update notification (priority SAMPLE) on exchange aodh with the
  messagingv2 driver (Aodh 2.x and later), "oslo-notification".
"""

import sys
import warnings

warnings.simplefilter("ignore")

from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402


def alarm(alarm_id, action):
    return {
        "actions": [action],
        "alarm_id": alarm_id,
        "alarm_name": "cpu_high",
        "severity": "critical",
        "previous": "ok",
        "current": "alarm",
        "reason": "Transition to alarm due to 3 samples outside threshold, most recent: 97.0",
        "reason_data": {"type": "threshold", "count": 3, "most_recent": 97.0},
    }


def main():
    url, action, host = sys.argv[1:4]
    conf = cfg.CONF
    conf([], project="tocsin-test")
    transport = oslo_messaging.get_rpc_transport(conf, url)
    target = oslo_messaging.Target(exchange="ceilometer", topic="alarm_notifier")
    client = oslo_messaging.get_rpc_client(transport, target)
    client.cast({}, "notify_alarm", data=alarm("oslo-cast", action))
    client.prepare(server=host).cast({}, "notify_alarm", data=alarm("oslo-host", action))
    client.prepare(fanout=True).cast({}, "notify_alarm", data=alarm("oslo-fanout", action))
    transport.cleanup()

    conf.set_override("control_exchange", "aodh")
    transport = oslo_messaging.get_notification_transport(conf, url)
    notifier = oslo_messaging.Notifier(
        transport, driver="messagingv2", publisher_id="alarming.evaluator", topics=["alarming"]
    )
    notifier.sample({}, "alarm.update", alarm("oslo-notification", action))
    transport.cleanup()
    print("sent 4")


if __name__ == "__main__":
    main()
