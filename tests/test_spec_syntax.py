"""One spec grammar for defenses and attacks (`defenses.spec_syntax`)."""

from __future__ import annotations

import pytest

from attacks import AttackError
from attacks.specs import parse_attack_spec
from defenses import DefenseError, parse_defense
from defenses.spec_syntax import SpecArgument, parse_spec_text, split_top_level


def test_arguments_split_at_commas_outside_brackets_braces_and_quotes() -> None:
    parsed = parse_spec_text(" cos : exclude=['a,b', \"c,d\"], priors={tv=0.3, l2=1}, 0.5 ,")
    assert parsed.name == "cos"
    assert parsed.arguments == (
        SpecArgument("exclude", "['a,b', \"c,d\"]"),
        SpecArgument("priors", "{tv=0.3, l2=1}"),
        SpecArgument(None, "0.5"),
    )
    assert [a.value for a in parsed.arguments] == [["a,b", "c,d"], {"tv": 0.3, "l2": 1}, 0.5]
    assert split_top_level("ats | soteria:layer='a|b' |", "|") == ["ats", "soteria:layer='a|b'"]


def test_defenses_and_attacks_read_values_alike() -> None:
    """The same TOML literal reaches a defense parameter and an attack option."""
    assert (
        parse_defense("gaussian:sigma=1e-1").sigma
        == parse_attack_spec("bayes:lr=1e-1").overrides["lr"]
    )
    assert parse_defense("soteria:layer='body.fc2'").layer == "body.fc2"
    assert parse_attack_spec("cos:exclude=['body.fc2.weight']").overrides == {
        "exclude": ["body.fc2.weight"]
    }


def test_a_string_parameter_keeps_the_text_as_written() -> None:
    """``ats:policy=7`` is the sub-policy '7', not the TOML integer 7."""
    assert parse_defense("ats:policy=7").policy == "7"
    assert parse_defense("ats:7").spec == parse_defense("ats:policy=7").spec
    assert parse_defense("soteria:layer=0").layer == "0"


def test_positional_values_are_for_defenses_only() -> None:
    assert (
        parse_defense("prune+gaussian:0.5,0.2").spec
        == parse_defense("prune+gaussian:p=0.5,sigma=0.2").spec
    )
    with pytest.raises(DefenseError, match="positional value '0.2' after key=value"):
        parse_defense("prune+gaussian:p=0.5,0.2")
    with pytest.raises(AttackError, match="expected key=value, got '5'"):
        parse_attack_spec("bayes:5")
