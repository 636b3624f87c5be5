"""Deploy-time Lambda that creates the Athena views by running their DDL through Athena.

Why: an Athena *named query* only saves SQL, it creates no view, and a hand-made Glue ``VIRTUAL_VIEW``
needs the view's output column types in an undocumented blob that goes stale when the SQL changes.
Running ``CREATE OR REPLACE VIEW`` lets Athena derive the types itself.  ``analytics/infra.py`` invokes
this function with ``aws.lambda_.Invocation`` (lifecycle scope ``CRUD``) whenever the SQL files change;
the payload lists the views in dependency order (``analytics.sql.load_views``)::

    {"database": "...", "workgroup": "...", "views": [{"name": "...", "ddl": "CREATE OR REPLACE VIEW ..."}],
     "tf": {"action": "create" | "update" | "delete", "prev_input": {...}}}

On create/update it runs every DDL in order, then drops views that the previous input had and this one
has not; on delete it drops the views (reverse order).  A failed statement fails the invocation, so
``pulumi up`` stops with Athena's reason.  Runs on the Lambda runtime: standard library + boto3 only.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

log = logging.getLogger(__name__)
log.setLevel(logging.INFO)

POLL_SECONDS = 0.5
TIMEOUT_SECONDS = 120.0
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ViewDdlError(RuntimeError):
    """An Athena statement failed or timed out; the message names the view and Athena's reason."""


def run_statement(
    athena: Any, sql: str, database: str, workgroup: str, label: str, sleep=time.sleep, timeout: float = TIMEOUT_SECONDS
) -> str:
    """Run one statement in the workgroup and wait for it; returns the query execution id.

    Raises:
        ViewDdlError: the query FAILED/CANCELLED or did not finish within ``timeout`` seconds.
    """
    qid = athena.start_query_execution(
        QueryString=sql, QueryExecutionContext={"Database": database}, WorkGroup=workgroup
    )["QueryExecutionId"]
    waited = 0.0
    while True:
        status = athena.get_query_execution(QueryExecutionId=qid)["QueryExecution"]["Status"]
        state = status["State"]
        if state == "SUCCEEDED":
            return qid
        if state in ("FAILED", "CANCELLED"):
            raise ViewDdlError(f"{label}: Athena {state}: {status.get('StateChangeReason', 'no reason given')}")
        if waited >= timeout:
            raise ViewDdlError(f"{label}: still {state} after {timeout:.0f} s (query {qid})")
        sleep(POLL_SECONDS)
        waited += POLL_SECONDS


def _names(payload: dict[str, Any] | None) -> list[str]:
    views = (payload or {}).get("views") or []
    names = [v["name"] for v in views]
    bad = [n for n in names if not _NAME.match(n)]
    if bad:
        raise ViewDdlError(f"invalid view names {bad}: expected lower_snake_case")
    return names


def apply(event: dict[str, Any], athena: Any, sleep=time.sleep) -> dict[str, Any]:
    """Create/replace or drop the views described by ``event``; returns what was done."""
    database, workgroup = event["database"], event["workgroup"]
    tf = event.get("tf") or {}
    action = tf.get("action", "create")
    created: list[str] = []
    dropped: list[str] = []
    if action == "delete":
        to_drop = list(reversed(_names(event)))
    else:
        for view in event.get("views") or []:
            run_statement(athena, view["ddl"], database, workgroup, f"view {view['name']}", sleep)
            created.append(view["name"])
        current = set(created)
        to_drop = [n for n in reversed(_names(tf.get("prev_input"))) if n not in current]
    for name in to_drop:
        run_statement(athena, f'DROP VIEW IF EXISTS "{name}"', database, workgroup, f"drop view {name}", sleep)
        dropped.append(name)
    log.info("views created: %s; dropped: %s", created, dropped)
    return {"action": action, "created": created, "dropped": dropped}


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (``view_runner.handler``)."""
    import boto3

    return apply(event, boto3.client("athena", region_name=os.environ.get("AWS_REGION")))
