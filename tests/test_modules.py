"""Contract tests over every built-in module, and the README that documents them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from picron.modules import TaskModule, check_module_class, load_modules

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
BUILT_IN = sorted(load_modules(), key=lambda module: module.identifier)
SPEC_OPTIONS = {  # SPEC §5, exactly
    "simplestats": {"total_tasks": "bool", "active_tasks": "bool", "inactive_tasks": "bool",
                    "failed_runs": "bool", "event_counters": "bool"},
    "eventcounter": {"event_counter": "str", "stats_key": "str", "reset_event_counter": "bool"},
    "cleanup": {"stats_older_than_days": "int", "runs_older_than_days": "int"},
    "command": {"command": "str", "workdir": "str"},
    "http": {"url": "str", "method": "str", "expect_status": "int", "body": "str",
             "content_type": "str", "headers": "str"},
    "backup": {"directory": "str", "keep": "int"},
}


def readme_modules_table() -> dict[str, dict[str, str]]:
    """{module: {option: type}} from the README's table of built-in modules."""
    section = README.split("<!-- modules:start -->")[1].split("<!-- modules:end -->")[0]
    table: dict[str, dict[str, str]] = {}
    module = None
    for line in section.splitlines():
        row = re.match(r"\| (?:`(\w+)` )?\| `(\w+)` \| (\w+) \|", line)
        if row:
            module = row.group(1) or module
            table.setdefault(module, {})[row.group(2)] = row.group(3)
    return table


def test_every_file_in_the_package_is_a_module():
    files = {path.stem for path in (ROOT / "picron" / "modules").glob("*.py")} - {"__init__"}
    assert {module.identifier for module in BUILT_IN} == files == set(SPEC_OPTIONS)


@pytest.mark.parametrize("module", BUILT_IN, ids=lambda module: module.identifier)
def test_module_contract(module: type[TaskModule]):
    check_module_class(module)
    assert module.__module__ == f"picron.modules.{module.identifier}"
    assert module.description and "\n" not in module.description
    assert {name: option.type for name, option in module.options.items()} == \
        SPEC_OPTIONS[module.identifier]
    for option in module.options.values():
        assert option.description.endswith(".")
        assert not (option.required and option.default is not None)
    schema = module.to_json()
    assert set(schema) == {"identifier", "description", "options"}
    assert all(set(option) == {"type", "description", "required", "default",
                                  "secret"}
               for option in schema["options"].values())


@pytest.mark.parametrize("module", BUILT_IN, ids=lambda module: module.identifier)
def test_module_and_options_are_in_the_readme_table(module: type[TaskModule]):
    documented = readme_modules_table().get(module.identifier)
    assert documented == {name: option.type for name, option in module.options.items()}


def test_readme_example_is_the_example_package():
    """The code in the README is the code in examples/ (comments aside)."""
    source = (ROOT / "examples/picron-hello/picron_hello/__init__.py").read_text()
    block = README.split("# examples/picron-hello/picron_hello/__init__.py\n")[1]
    block = block.split("```")[0]
    strip = [re.sub(r"\s+#.*$", "", line) for line in source.splitlines()]
    position = 0
    for line in filter(str.strip, block.splitlines()):
        assert line in strip[position:], line
        position = strip.index(line, position) + 1
