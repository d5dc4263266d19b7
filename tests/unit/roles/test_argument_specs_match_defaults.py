"""One source for each default: defaults/main.yml holds the value, argument_specs and the README describe it.

For every role with both meta/argument_specs.yml and defaults/main.yml:
  - every variable of defaults/main.yml is an option of the `main` entry point;
  - in every entry point, an option's `default:` is exactly the value defaults/main.yml has (the loaded
    YAML: Jinja strings as written, dicts and lists by value, 8080 and "8080" differ), and an option
    that defaults/main.yml defines carries that default; an option neither gives a default (a required
    or secret input) is fine;
  - the role's README names every variable of defaults/main.yml.
"""

import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLES = ROOT / "roles"

# Roles left out, and why.
SKIPPED_ROLES = {}
SKIPPED_READMES = {}


def _load(path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _roles():
    """(role name, defaults, argument_specs) of every role with both files."""
    for role in sorted(p for p in ROLES.iterdir() if p.is_dir()):
        defaults_file = role / "defaults" / "main.yml"
        specs_file = role / "meta" / "argument_specs.yml"
        if defaults_file.is_file() and specs_file.is_file():
            yield role.name, _load(defaults_file) or {}, (_load(specs_file) or {}).get("argument_specs") or {}


ROLE_DATA = list(_roles())


def _param(role, *values):
    marks = [pytest.mark.skip(reason=SKIPPED_ROLES[role])] if role in SKIPPED_ROLES else []
    return pytest.param(role, *values, id="-".join([role, *(str(v) for v in values)]), marks=marks)


def _options(spec):
    return (spec or {}).get("options") or {}


DEFAULT_VARIABLES = [_param(role, name) for role, defaults, _ in ROLE_DATA for name in defaults]
SPEC_OPTIONS = [
    _param(role, entry_point, name)
    for role, defaults, specs in ROLE_DATA
    for entry_point, spec in specs.items()
    # Variables of defaults/main.yml missing from the spec: test_default_is_an_option_of_main.
    for name in _options(spec)
]
README_VARIABLES = [
    pytest.param(
        role,
        name,
        id=f"{role}-{name}",
        marks=[pytest.mark.skip(reason=SKIPPED_ROLES.get(role) or SKIPPED_READMES[role])]
        if role in SKIPPED_ROLES or role in SKIPPED_READMES
        else [],
    )
    for role, defaults, _ in ROLE_DATA
    for name in defaults
]

_BY_ROLE = {role: (defaults, specs) for role, defaults, specs in ROLE_DATA}


def _same(a, b):
    """Equal values of equal types, all the way down (True is not 1, 8080 is not "8080", 2 is not 2.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return {(type(k), k) for k in a} == {(type(k), k) for k in b} and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _show(value):
    return json.dumps(value, sort_keys=True, default=str)


def test_roles_found():
    assert {role for role, _, _ in ROLE_DATA} >= {"app", "backup", "docker", "proxy"}
    for role, _, specs in ROLE_DATA:
        assert "main" in specs, f"roles/{role}/meta/argument_specs.yml has no `main` entry point"


@pytest.mark.parametrize("role, name", DEFAULT_VARIABLES)
def test_default_is_an_option_of_main(role, name):
    _, specs = _BY_ROLE[role]
    if name not in _options(specs.get("main")):
        pytest.fail(
            f"roles/{role}: {name} is set in defaults/main.yml but is no option of the `main` entry point "
            "in meta/argument_specs.yml"
        )


@pytest.mark.parametrize("role, entry_point, name", SPEC_OPTIONS)
def test_spec_default_is_the_defaults_value(role, entry_point, name):
    defaults, specs = _BY_ROLE[role]
    option = _options(specs[entry_point])[name] or {}
    where = f"roles/{role}, entry point {entry_point}, option {name}"
    if name in defaults:
        if "default" not in option:
            pytest.fail(f"{where}: defaults/main.yml sets {_show(defaults[name])}; the spec must carry the same `default:`")
        if not _same(option["default"], defaults[name]):
            pytest.fail(
                f"{where}: argument_specs default {_show(option['default'])} ({type(option['default']).__name__}) "
                f"differs from defaults/main.yml {_show(defaults[name])} ({type(defaults[name]).__name__})"
            )
    elif "default" in option:
        pytest.fail(
            f"{where}: argument_specs has default {_show(option['default'])} but defaults/main.yml does not set it; "
            "defaults/main.yml holds the value"
        )


@pytest.mark.parametrize("role, name", README_VARIABLES)
def test_readme_names_every_default(role, name):
    readme = ROLES / role / "README.md"
    assert readme.is_file(), f"roles/{role} has no README.md"
    text = readme.read_text(encoding="utf-8")
    if not re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text):
        pytest.fail(f"roles/{role}/README.md does not mention {name}")
