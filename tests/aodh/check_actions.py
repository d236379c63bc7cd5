"""Runs aodh's own alarm-action check (aodh.api.controllers.v2.alarms,
from PyPI) behind the tocsin_aodh paste filter, as aodh-api would for a
request of Keystone project PROJECT, and prints one JSON line: for each
action given, "accepted" or aodh's error.

Usage: check_actions.py TOCSIN_API TOKEN PROJECT ACTION...
"""

import json
import sys
from unittest import mock

from aodh.api.controllers.v2 import alarms
from aodh.api.controllers.v2 import base

import tocsin_aodh

api, token, project, actions = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
tocsin_aodh.filter_factory({}, tocsin_api=api, token=token)(None)

request = mock.Mock()
request.cfg.api.alarm_max_actions = -1
request.headers = {"X-Project-Id": project}
results = {}
with mock.patch.object(alarms.pecan, "request", request), \
        mock.patch.object(base.pecan, "response", mock.Mock()), \
        mock.patch.object(alarms.rbac, "get_limited_to_project", return_value=None):
    for action in actions:
        alarm = alarms.Alarm(alarm_actions=[action])
        try:
            alarms.Alarm.check_alarm_actions(alarm)
            results[action] = "accepted"
        except base.ClientSideError as error:
            results[action] = str(error)
print(json.dumps(results))
