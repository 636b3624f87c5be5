"""The deploy-time view runner: CREATE OR REPLACE in order, drop removed views, fail loudly with Athena's reason."""

from __future__ import annotations

import pytest

from deploy.view_runner import ViewDdlError, apply, run_statement


class FakeAthena:
    """Records statements; each query goes through RUNNING and ends in the state ``outcome(sql)`` returns."""

    def __init__(self, outcome=lambda sql: ("SUCCEEDED", "")) -> None:
        self.statements: list[tuple[str, str, str]] = []
        self.outcome = outcome
        self.polls: dict[str, int] = {}

    def start_query_execution(self, QueryString, QueryExecutionContext, WorkGroup):
        qid = f"q{len(self.statements)}"
        self.statements.append((QueryString, QueryExecutionContext["Database"], WorkGroup))
        self.polls[qid] = 0
        return {"QueryExecutionId": qid}

    def get_query_execution(self, QueryExecutionId):
        self.polls[QueryExecutionId] += 1
        if self.polls[QueryExecutionId] < 2:
            return {"QueryExecution": {"Status": {"State": "RUNNING"}}}
        sql = self.statements[int(QueryExecutionId[1:])][0]
        state, reason = self.outcome(sql)
        return {"QueryExecution": {"Status": {"State": state, "StateChangeReason": reason}}}


def _event(*names: str, **tf) -> dict:
    event = {
        "database": "db",
        "workgroup": "wg",
        "views": [{"name": n, "ddl": f"CREATE OR REPLACE VIEW {n} AS SELECT 1"} for n in names],
    }
    if tf:
        event["tf"] = tf
    return event


def test_creates_views_in_the_given_order_in_the_workgroup_and_database():
    athena = FakeAthena()
    result = apply(_event("reads_unique", "hourly_entries", "hourly_peak"), athena, sleep=lambda s: None)
    assert [s[0].split()[4] for s in athena.statements] == ["reads_unique", "hourly_entries", "hourly_peak"]
    assert {(db, wg) for _, db, wg in athena.statements} == {("db", "wg")}
    assert result == {"action": "create", "created": ["reads_unique", "hourly_entries", "hourly_peak"], "dropped": []}


def test_update_drops_views_whose_sql_file_was_removed():
    athena = FakeAthena()
    prev = _event("a_view", "old_view", "b_view")
    result = apply(_event("a_view", "b_view", action="update", prev_input=prev), athena, sleep=lambda s: None)
    assert result["dropped"] == ["old_view"]
    assert athena.statements[-1][0] == 'DROP VIEW IF EXISTS "old_view"'


def test_delete_drops_every_view_dependents_first():
    athena = FakeAthena()
    result = apply(_event("base", "dependent", action="delete"), athena, sleep=lambda s: None)
    assert result["created"] == [] and result["dropped"] == ["dependent", "base"]


def test_a_failing_view_fails_the_deployment_with_athenas_reason():
    athena = FakeAthena(
        lambda sql: ("FAILED", "line 1:8: Table 'reads' does not exist") if "broken" in sql else ("SUCCEEDED", "")
    )
    with pytest.raises(ViewDdlError, match=r"view broken: Athena FAILED: .*Table 'reads' does not exist"):
        apply(_event("fine", "broken", "never_reached"), athena, sleep=lambda s: None)
    assert len(athena.statements) == 2, "statements after a failure must not run"


def test_a_query_that_never_finishes_times_out():
    athena = FakeAthena(lambda sql: ("RUNNING", ""))
    with pytest.raises(ViewDdlError, match="still RUNNING"):
        run_statement(athena, "SELECT 1", "db", "wg", "view slow", sleep=lambda s: None, timeout=2)


def test_view_names_must_be_plain_identifiers():
    with pytest.raises(ViewDdlError, match="invalid view names"):
        apply(_event('x"; DROP TABLE reads; --', action="delete"), FakeAthena(), sleep=lambda s: None)
