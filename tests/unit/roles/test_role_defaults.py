"""One source per default: every variable of a role has its value in defaults/main.yml, the
same value as the default its meta/argument_specs.yml documents, and a line in its README.

The roles listed here hold to it; a role joins the list once it does.
"""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
ROLES = ["lb", "proxy"]


def role_files(role):
    base = ROOT / "roles" / role
    defaults = yaml.safe_load((base / "defaults" / "main.yml").read_text()) or {}
    specs = yaml.safe_load((base / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    return defaults, specs, (base / "README.md").read_text()


@pytest.mark.parametrize("role", ROLES)
def test_spec_defaults_are_the_defaults(role):
    defaults, specs, _ = role_files(role)
    options = specs["main"]["options"]
    assert sorted(set(defaults) - set(options)) == [], "in defaults/main.yml, not in argument_specs.yml"
    assert sorted(set(options) - set(defaults)) == [], "in argument_specs.yml, not in defaults/main.yml"
    differ = {k: (options[k].get("default"), v) for k, v in defaults.items() if options[k].get("default") != v}
    assert differ == {}, "argument_specs.yml default != defaults/main.yml value"


@pytest.mark.parametrize("role", ROLES)
def test_every_entry_point_has_the_same_options(role):
    _, specs, _ = role_files(role)
    for entry, spec in specs.items():
        assert spec["options"] == specs["main"]["options"], entry


@pytest.mark.parametrize("role", ROLES)
def test_every_variable_is_in_the_readme(role):
    defaults, _, readme = role_files(role)
    assert [k for k in defaults if f"`{k}`" not in readme] == []
