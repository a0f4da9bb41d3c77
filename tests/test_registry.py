"""The module registry: option schemas, discovery through entry points, broken packages."""
from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from picron.cli import main
from picron.errors import ValidationError
from picron.modules import Option, Registry, TaskModule, check_module_class, load_modules
from picron.records import TaskSpec
from picron.runner import Runner
from picron.schedule import utcnow
from picron.storage import Store, open_store
from picron.tasks import parse_task

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "picron-hello"


class Typed(TaskModule):
    identifier = "typed"
    description = "every option type"
    options = {"flag": Option("bool", "a flag", default=False),
               "count": Option("int", "a count", default=3),
               "text": Option("str", "a text", required=True)}

    def do(self, options):
        return True


# -- option schemas --------------------------------------------------------------------

@pytest.mark.parametrize("given, stored", [
    ({"text": "x"}, {"text": "x"}),
    ({"text": "x", "flag": True}, {"text": "x", "flag": "true"}),
    ({"text": "x", "flag": "Yes "}, {"text": "x", "flag": "true"}),
    ({"text": "x", "flag": "off"}, {"text": "x", "flag": "false"}),
    ({"text": "x", "flag": 0}, {"text": "x", "flag": "false"}),
    ({"text": "x", "count": " 12 "}, {"text": "x", "count": "12"}),
    ({"text": "x", "count": 7.0}, {"text": "x", "count": "7"}),
    ({"text": "x", "count": "-3"}, {"text": "x", "count": "-3"}),
    ({"text": 5}, {"text": "5"}),
    ({"text": False}, {"text": "false"}),
])
def test_options_are_normalised_to_strings(given, stored):
    assert Typed.validate_options(given) == stored


@pytest.mark.parametrize("given, named", [
    ({}, "text"),                                   # required
    ({"text": "x", "other": "1"}, "other"),         # unknown
    ({"text": "x", "flag": "maybe"}, "flag"),
    ({"text": "x", "flag": 2}, "flag"),
    ({"text": "x", "count": "1.5"}, "count"),
    ({"text": "x", "count": 1.5}, "count"),
    ({"text": "x", "count": True}, "count"),
    ({"text": "x", "count": float("nan")}, "count"),
    ({"text": "x", "count": "1e3"}, "count"),
    ({"text": None}, "text"),
    ({"text": ["a"]}, "text"),
    ({"text": "a\x00b"}, "text"),
    ({"text": "é" * 3000}, "text"),                 # over 4 KiB
])
def test_bad_options_are_refused_naming_the_option(given, named):
    with pytest.raises(ValidationError) as caught:
        Typed.validate_options(given)
    assert caught.value.field == "options"
    assert repr(named) in caught.value.message


def test_options_must_be_an_object():
    with pytest.raises(ValidationError, match="key/value"):
        Typed.validate_options(["text"])


def test_typed_options_convert_and_fill_defaults():
    assert Typed.typed_options({"text": "hi", "flag": "true"}) == \
        {"text": "hi", "flag": True, "count": 3}


def test_typed_options_recheck_stored_values():
    """Options stored by hand or by an older version fail clearly, not with a ValueError."""
    with pytest.raises(ValidationError, match="'count' must be an integer"):
        Typed.typed_options({"text": "hi", "count": "many"})
    with pytest.raises(ValidationError, match="requires option 'text'"):
        Typed.typed_options({})
    assert Typed.typed_options({"text": "hi", "gone": "1"})["text"] == "hi"


def test_check_options_hook_runs_on_save_and_before_a_run():
    class Ranged(Typed):
        identifier = "ranged"

        @classmethod
        def check_options(cls, options):
            if options["count"] > 5:
                raise ValidationError("options: 'count' must be at most 5", field="options")

    assert Ranged.validate_options({"text": "x", "count": 5})["count"] == "5"
    with pytest.raises(ValidationError, match="at most 5"):
        Ranged.validate_options({"text": "x", "count": 6})
    with pytest.raises(ValidationError, match="at most 5"):
        Ranged.typed_options({"text": "x", "count": "9"})


@pytest.mark.parametrize("attributes, problem", [
    ({"identifier": "Hello"}, "bad identifier"),
    ({"identifier": ""}, "bad identifier"),
    ({"identifier": "a-b"}, "bad identifier"),
    ({"identifier": None}, "bad identifier"),
    ({"options": {"x": {"type": "str"}}}, "needs an Option"),
    ({"options": {"x": Option("float", "")}}, "needs an Option"),
    ({"options": {"x": Option("int", "", default="3")}}, "is not a int"),
    ({"options": {"x": Option("bool", "", default=1)}}, "is not a bool"),
    ({"options": []}, "options a dict"),
])
def test_malformed_module_classes_are_refused(attributes, problem):
    cls = type("Bad", (TaskModule,), {"identifier": "bad", "description": "", **attributes})
    with pytest.raises(TypeError, match=problem):
        check_module_class(cls)


def test_a_non_module_is_refused():
    with pytest.raises(TypeError, match="not a picron.modules.TaskModule"):
        check_module_class(object)


# -- lookup ----------------------------------------------------------------------------

@pytest.mark.parametrize("name, identifier", [("SimpleStats", "simplestats"),
                                              ("EventCounter", "eventcounter"),
                                              ("HTTP", "http"), ("command", "command")])
def test_identifiers_are_case_insensitive(name, identifier):
    assert load_modules().get(name).identifier == identifier


def test_privacyidea_module_names_are_stored_lowercase():
    spec = parse_task({"name": "stats", "interval": "@daily", "taskmodule": "SimpleStats",
                       "options": {"total_tasks": True}}, load_modules(), ("node1",))
    assert spec.taskmodule == "simplestats"
    assert spec.options == {"total_tasks": "true"}


@pytest.mark.parametrize("name", ["nope", "", None, 3, "../command"])
def test_unknown_module_is_a_validation_error(name):
    with pytest.raises(ValidationError) as caught:
        Registry(modules={}).get(name)
    assert caught.value.field == "taskmodule"


def test_registry_discovers_lazily_and_once():
    calls = []

    def discover():
        calls.append(1)
        yield Typed

    registry = Registry(discover)
    assert calls == []
    assert registry.get("TYPED") is Typed and list(registry) == [Typed]
    assert calls == [1]


# -- third-party modules through entry points ---------------------------------------------

@pytest.fixture
def site(tmp_path, monkeypatch):
    """A directory on sys.path where fake distributions are "installed"."""
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    before = set(sys.modules)
    yield directory
    for name in set(sys.modules) - before:
        if name.startswith("picron_"):
            del sys.modules[name]


def install(site: Path, dist: str, entry_points: dict[str, str],
            sources: dict[str, str] | None = None) -> None:
    """Write the distribution metadata pip would write, plus the modules' source."""
    info = site / f"{dist}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[picron.modules]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    for name, source in (sources or {}).items():
        (site / f"{name}.py").write_text(source)


@pytest.fixture
def hello(site, monkeypatch):
    """The example package of examples/picron-hello, installed by its metadata."""
    monkeypatch.syspath_prepend(str(EXAMPLE))
    entry_points = _example_entry_points()
    install(site, "picron_hello", entry_points)
    return site


def _example_entry_points() -> dict[str, str]:
    import tomllib

    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    return project["entry-points"]["picron.modules"]


def test_the_example_package_declares_its_entry_point():
    assert _example_entry_points() == {"hello": "picron_hello:Hello"}


def test_third_party_module_is_discovered(hello):
    registry = load_modules()
    module = registry.get("Hello")
    assert module.identifier == "hello" and module.__module__ == "picron_hello"
    assert {"command", "simplestats", "hello"} <= {m.identifier for m in registry}
    assert registry.problems == []


def file_store(path: Path) -> Store:
    from datetime import timezone

    return open_store(str(path), default_zone=timezone.utc)


def test_third_party_module_runs_from_run_scheduled(hello, tmp_path, clock):
    database = tmp_path / "picron.db"
    store = file_store(database)
    registry = load_modules()
    spec = parse_task({"name": "greet", "interval": "@hourly", "taskmodule": "HELLO",
                       "options": {"name": "Ada", "times": 2, "counter": "greetings"}},
                      registry, ("node1",))
    store.add_task(spec, clock())
    clock.advance(hours=1)
    runner = Runner(store, registry, node="node1", clock=clock, isolate=True)
    report = runner.run_scheduled()
    assert [(r.task, r.status) for r in report.results] == [("greet", "success")]
    assert report.results[0].message.splitlines()[:3] == \
        ["hello, Ada!", "hello, Ada!", "greetings is now 2"]
    assert store.get_counter("greetings") == 2
    with pytest.raises(ValidationError, match="'times' must be between 1 and 10"):
        parse_task({**spec.__dict__, "nodes": list(spec.nodes), "options": {"times": 11}},
                   registry, ("node1",))


BROKEN = {"picron_broken": "raise ZeroDivisionError('at import time')\n",
          "picron_clash": "from picron.modules import TaskModule\n"
                          "class Command(TaskModule):\n"
                          "    identifier = 'command'\n"
                          "    def do(self, options):\n"
                          "        return True\n",
          "picron_shouty": "from picron.modules import TaskModule\n"
                           "class Shout(TaskModule):\n"
                           "    identifier = 'SHOUT'\n",
          "picron_quitter": "import sys\nsys.exit('no')\n"}


@pytest.fixture
def broken(site):
    install(site, "picron_broken", {"broken": "picron_broken:Module",
                                    "command": "picron_clash:Command",
                                    "shout": "picron_shouty:Shout",
                                    "quitter": "picron_quitter:Quit",
                                    "missing": "picron_not_there:Module"}, BROKEN)
    return site


def test_broken_and_clashing_modules_are_skipped_with_a_reason(broken):
    registry = load_modules()
    assert registry.get("command").__module__ == "picron.modules.command"
    problems = "\n".join(registry.problems)
    assert len(registry.problems) == 5
    assert "'broken' skipped: picron_broken:Module cannot be loaded: ZeroDivisionError: " \
           "at import time" in problems
    assert "identifier 'command' is already taken by built-in module command" in problems
    assert "bad identifier 'SHOUT'" in problems
    assert "SystemExit" in problems and "ModuleNotFoundError" in problems
    with pytest.raises(ValidationError, match="unknown task module 'broken' .*ZeroDivision"):
        registry.get("broken")


def test_two_third_party_modules_with_one_identifier_first_wins(site):
    source = ("from picron.modules import TaskModule\nclass M(TaskModule):\n"
              "    identifier = 'dup'\n    description = '{}'\n")
    install(site, "picron_dup", {"dup": "picron_dup_a:M", "dup2": "picron_dup_b:M"},
            {"picron_dup_a": source.format("a"), "picron_dup_b": source.format("b")})
    registry = load_modules()
    assert registry.get("dup").description == "a"
    assert registry.problems == ["task module 'dup2' skipped: picron_dup_b:M: identifier "
                                 "'dup' is already taken by picron_dup_a:M"]


def test_broken_module_stops_neither_list_nor_run_scheduled(broken, db_path, capsys):
    store = file_store(Path(db_path))
    past = utcnow() - timedelta(minutes=5)
    for name, module in (("uses broken", "broken"), ("stats", "simplestats")):
        store.add_task(TaskSpec(name=name, interval="* * * * *", taskmodule=module,
                                nodes=("node1",), options={"total_tasks": "true"}
                                if module == "simplestats" else {}), past)
    assert main(["list"]) == 0
    assert "uses broken" in capsys.readouterr().out
    assert main(["run_scheduled", "-c"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "uses broken on node1: failed" in err and "ZeroDivisionError" in err
    assert "stats" not in err
    runs = {run.task: run for run in store.list_runs()}
    assert runs["stats"].status == "success" and runs["stats"].message == "total_tasks=2"
    assert "unknown task module 'broken'" in runs["uses broken"].message
    assert "(is the module installed?)" in runs["uses broken"].message


def test_task_whose_module_is_gone_fails_clearly(tmp_path, clock):
    database = tmp_path / "picron.db"
    store = file_store(database)
    store.add_task(TaskSpec(name="orphan", interval="@hourly", taskmodule="uninstalled",
                            nodes=("node1",)), clock())
    store.add_task(TaskSpec(name="fine", interval="@hourly", taskmodule="simplestats",
                            nodes=("node1",)), clock())
    clock.advance(hours=1)
    report = Runner(store, load_modules(), node="node1", clock=clock).run_scheduled()
    assert [(r.task, r.status) for r in report.results] == \
        [("orphan", "failed"), ("fine", "success")]
    assert report.results[0].message == \
        "taskmodule: unknown task module 'uninstalled' (is the module installed?)"


def test_stored_options_that_no_longer_validate_fail_the_run(tmp_path, clock):
    database = tmp_path / "picron.db"
    store = file_store(database)
    store.add_task(TaskSpec(name="web", interval="@hourly", taskmodule="http",
                            nodes=("node1",), options={"url": "ftp://example.org/"}), clock())
    clock.advance(hours=1)
    result = Runner(store, load_modules(), node="node1", clock=clock).run_scheduled().results[0]
    assert result.status == "failed"
    assert result.message == "options: 'url' must be an http:// or https:// URL with a host"


# -- picron modules ----------------------------------------------------------------------

def test_cli_modules_json_lists_every_module_with_its_schema(db_path, capsys):
    assert main(["modules", "--json"]) == 0
    modules = {m["identifier"]: m for m in json.loads(capsys.readouterr().out)}
    assert set(modules) == {"backup", "cleanup", "command", "eventcounter", "http",
                            "simplestats"}
    assert modules["eventcounter"]["options"]["event_counter"] == \
        {"type": "str", "description": "Name of the event counter to read.",
         "required": True, "default": None}
    assert modules["backup"]["options"]["keep"]["default"] == 7
    assert modules["http"]["options"]["method"]["default"] == "GET"


def test_cli_modules_table_and_warnings(broken, hello, db_path, capsys):
    assert main(["modules"]) == 0
    out, err = capsys.readouterr()
    assert "hello - Say hello, and count the greetings in an event counter." in out
    assert "    times (int) (default 1): How many greetings (1-10)." in out
    assert "    event_counter (str) (required): Name of the event counter to read." in out
    assert err.count("picron: warning: task module") == 5
