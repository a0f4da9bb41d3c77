"""SPEC §1 validation: every bad field is refused with its name; good input is normalised."""
from __future__ import annotations

import pytest

from picron.errors import ValidationError
from picron.tasks import parse_task

BASE = {"name": "job", "interval": "*/5 * * * *", "taskmodule": "succeed"}


def parse(registry, **fields):
    return parse_task({**BASE, **fields}, registry, ("node1",))


def test_defaults(registry):
    spec = parse(registry)
    assert (spec.active, spec.ordering, spec.nodes, spec.options, spec.retry_if_failed,
            spec.max_retries, spec.timeout, spec.timezone) == \
        (True, 0, ("node1",), {}, True, None, None, None)


def test_normalisation(registry):
    spec = parse(registry, name="  job  ", taskmodule="SUCCEED", nodes=" a , b,a ",
                 interval="@Hourly", options={"note": 5})
    assert spec.name == "job" and spec.taskmodule == "succeed"
    assert spec.nodes == ("a", "b") and spec.interval == "@hourly"
    assert spec.options == {"note": "5"}
    sleep = parse(registry, taskmodule="sleep", options={"seconds": 3, "loud": True})
    assert sleep.options == {"seconds": "3", "loud": "true"}


BAD = [
    ("name", ""), ("name", "   "), ("name", "x" * 65), ("name", "a\x00b"), ("name", "a\nb"),
    ("name", 5), ("name", None),
    ("interval", "every two days"), ("interval", "* * * * * *"), ("interval", None),
    ("ordering", -1), ("ordering", "abc"), ("ordering", 1.5), ("ordering", float("inf")),
    ("ordering", 2**63), ("ordering", None), ("ordering", True),
    ("timeout", 0), ("timeout", -1), ("timeout", "10"), ("timeout", True),
    ("max_retries", -1), ("max_retries", 1.5), ("max_retries", False),
    ("active", "yes"), ("active", 2), ("active", None),
    ("retry_if_failed", "yes"), ("retry_if_failed", 1), ("retry_if_failed", None),
    ("nodes", []), ("nodes", [""]), ("nodes", "a b"), ("nodes", ["n"] * 0 + [f"n{i}" for i in
                                                                         range(1000)]),
    ("nodes", [1, 2]), ("nodes", "a/b"), ("nodes", None), ("nodes", ""),
    ("timezone", "Mars/Base"), ("timezone", 3),
    ("taskmodule", "os"), ("taskmodule", "../../x"), ("taskmodule", "picron.modules.command"),
    ("taskmodule", None),
    ("options", "not an object"), ("options", {"note": {"nested": 1}}), ("options", {"x": "1"}),
    ("options", {"note": "y" * 5000}), ("options", {"note": ["a"]}),
]


@pytest.mark.parametrize("field, value", BAD)
def test_bad_values_are_refused_naming_the_field(registry, field, value):
    with pytest.raises(ValidationError) as caught:
        parse(registry, **{field: value})
    assert caught.value.field == field, caught.value.message
    assert field in caught.value.message


def test_options_are_checked_against_the_schema(registry):
    with pytest.raises(ValidationError, match="requires option 'seconds'"):
        parse(registry, taskmodule="sleep")
    with pytest.raises(ValidationError, match="must be an integer"):
        parse(registry, taskmodule="sleep", options={"seconds": "soon"})
    with pytest.raises(ValidationError, match="must be true or false"):
        parse(registry, taskmodule="sleep", options={"seconds": 1, "loud": "maybe"})


def test_required_fields_and_unknown_fields(registry):
    for missing in ("name", "interval", "taskmodule"):
        data = {k: v for k, v in BASE.items() if k != missing}
        with pytest.raises(ValidationError) as caught:
            parse_task(data, registry, ("node1",))
        assert caught.value.field == missing
    with pytest.raises(ValidationError) as caught:
        parse(registry, colour="red")
    assert caught.value.field == "colour"
    with pytest.raises(ValidationError):
        parse_task(["not", "an", "object"], registry, ("node1",))


def test_partial_edit_changes_only_given_fields(registry):
    base = parse(registry, ordering=4, nodes="a,b")
    edited = parse_task({"interval": "@daily"}, registry, ("node1",), base=base)
    assert edited.interval == "@daily" and edited.ordering == 4 and edited.nodes == ("a", "b")
    with pytest.raises(ValidationError):  # options re-checked against a new module
        parse_task({"taskmodule": "sleep"}, registry, ("node1",), base=base)


def test_read_only_fields_are_ignored(registry):
    spec = parse(registry, id=7, last_runs={}, next_runs={}, failure_streak={})
    assert spec.name == "job"
