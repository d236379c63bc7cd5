"""A paste filter for aodh-api: accept the action schemes tocsin serves.

aodh validates an alarm action with ``url.scheme not in ACTIONS_SCHEMA``,
where ``ACTIONS_SCHEMA`` (``aodh.api.controllers.v2.alarms``) is the list of
``aodh.notifier`` entry points read at import. The filter replaces it with a
set that also holds the schemes of tocsin's live notifiers, read from
tocsin's API (``GET /v1/notifiers``) and cached for ``cache_seconds``: the
operator's for every project, a tenant's only in alarms of the projects
tocsin binds to that tenant (``project_ids``), the request's project being
the one Keystone's middleware put in ``X-Project-Id``.
"""

import json
import logging

import pecan
import threading
import time
import urllib.request

LOG = logging.getLogger(__name__)


class TocsinSchemes:
    """aodh's own schemes, plus those tocsin serves (asked of its API)."""

    def __init__(self, own, api, token, cache_seconds=5.0):
        self._own = frozenset(own)
        self._url = api.rstrip("/") + "/v1/notifiers"
        self._token = token
        self._cache_seconds = cache_seconds
        self._served = {}
        self._fetched_at = None
        self._fetching = False
        self._lock = threading.Lock()

    def __contains__(self, scheme):
        if scheme in self._own:
            return True
        served = self._tocsin()
        if scheme not in served:
            return False
        projects = served[scheme]
        return projects is None or _request_project() in projects

    def __iter__(self):
        return iter(sorted(self._own | set(self._tocsin())))

    def _tocsin(self):
        # One request at a time, made outside the lock: other checks use
        # what tocsin served last meanwhile, and never wait on tocsin.
        with self._lock:
            fresh = self._fetched_at is not None and time.monotonic() - self._fetched_at < self._cache_seconds
            if fresh or self._fetching:
                return self._served
            self._fetching = True
        served = None
        try:
            served = self._fetch()
        except Exception as error:  # keep what tocsin served last
            LOG.warning("tocsin: cannot list the notifiers at %s: %s", self._url, error)
        with self._lock:
            self._fetching = False
            self._fetched_at = time.monotonic()
            if served is not None:
                self._served = served
            return self._served

    def _fetch(self):
        request = urllib.request.Request(self._url, headers={"Authorization": "Bearer " + self._token})
        with urllib.request.urlopen(request, timeout=5) as response:
            notifiers = json.load(response)["notifiers"]
        # scheme -> the projects that may use it (None: every project).
        return {
            n["scheme"]: (None if n.get("projects") is None else frozenset(n["projects"]))
            for n in notifiers
            if (n.get("live") or {}).get("state") == "live"
        }


def _request_project():
    """The project of the request being validated, as Keystone's
    middleware set it; None outside a request."""
    try:
        return pecan.request.headers.get("X-Project-Id")
    except (AttributeError, TypeError, RuntimeError):
        return None


def filter_factory(global_conf, **local_conf):
    """The paste filter: installs the scheme set, passes requests through."""
    from aodh.api.controllers.v2 import alarms

    if "token_file" in local_conf:
        with open(local_conf["token_file"]) as token_file:
            token = token_file.read().strip()
    else:
        token = local_conf["token"]
    if not isinstance(alarms.ACTIONS_SCHEMA, TocsinSchemes):
        alarms.ACTIONS_SCHEMA = TocsinSchemes(
            alarms.ACTIONS_SCHEMA,
            local_conf.get("tocsin_api", "http://127.0.0.1:8080"),
            token,
            float(local_conf.get("cache_seconds", 5)),
        )
    return lambda app: app
