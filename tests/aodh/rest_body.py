"""Prints the body Aodh's REST notifier POSTs for each captured
oslo.messaging body given: the message read as oslo.messaging reads it
(oslo.serialization's jsonutils), its alarm handed to aodh's own
AlarmEndpoint and RestAlarmNotifier (aodh from PyPI), the request caught
where it would leave for the network. One JSON line per file, in order:
{"file": FILE, "body": BODY}.

Usage: rest_body.py BODY_FILE...
"""

import json
import sys
from unittest import mock

from oslo_config import cfg
from oslo_serialization import jsonutils

from aodh import notifier
from aodh.notifier import rest

conf = cfg.ConfigOpts()
conf.register_opts(rest.OPTS)
conf([], project="tocsin-test")
extension = mock.Mock(obj=rest.RestAlarmNotifier(conf))

for path in sys.argv[1:]:
    with open(path, "rb") as body_file:
        outer = jsonutils.loads(body_file.read().decode("utf-8"))
    message = jsonutils.loads(outer["oslo.message"]) if "oslo.message" in outer else outer
    data = message["payload"] if "payload" in message else message["args"]["data"]
    data["actions"] = ["http://127.0.0.1:9/alarm"]
    sent = []
    answer = mock.Mock(status_code=200, reason="OK")
    with mock.patch.object(rest.requests.Session, "post", lambda _, url, **kw: sent.append(kw) or answer):
        notifier.AlarmEndpoint._process_alarm({"http": extension}, data)
    if len(sent) != 1:
        raise SystemExit(f"{path}: aodh made {len(sent)} requests")
    print(json.dumps({"file": path, "body": sent[0]["data"]}))
