"""The scrub every journal line and every playbook artifact goes through."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from remediate.scrub import MASK, Scrubber, is_secret_field

SECRET = "Pa\"ss\\wörd'1"


@pytest.mark.parametrize(
    "shape",
    [
        SECRET,
        json.dumps(SECRET)[1:-1],
        json.dumps(SECRET, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(SECRET)[1:-1])[1:-1],  # JSON in JSON (a job event's stdout)
        repr(SECRET)[1:-1],
        quote(SECRET, safe=""),
    ],
)
def test_every_escaped_shape_of_a_secret_is_masked(shape: str) -> None:
    text = f"login failed for {shape} at 02:00"
    clean = Scrubber([SECRET]).text(text)
    assert clean == f"login failed for {MASK} at 02:00"


def test_no_fragment_survives_when_one_secret_contains_another() -> None:
    scrubber = Scrubber(["abc", "xxabcxx"])
    assert scrubber.text("-xxabcxx-abc-") == f"-{MASK}-{MASK}-"


def test_secrets_learnt_later_are_masked_and_empty_ones_ignored() -> None:
    scrubber = Scrubber()
    assert not scrubber
    scrubber.add("")
    assert scrubber.text("nothing to hide") == "nothing to hide"
    scrubber.add("hunter2")
    assert scrubber.text("pw=hunter2") == f"pw={MASK}"
    assert scrubber.contains_secret("x hunter2 y")
    assert not scrubber.contains_secret("x hunter y")


@pytest.mark.parametrize(
    "name",
    ["password", "ansible_password", "genesys_gax_password", "vault_passwd", "client_secret",
     "api_token", "apiKey", "ssh_private_key", "Credentials", "passphrase"],
)  # fmt: skip
def test_secret_looking_field_names(name: str) -> None:
    assert is_secret_field(name)


@pytest.mark.parametrize("name", ["user", "outbound_auth", "contact", "prefix", "site", "bypass"])
def test_ordinary_field_names(name: str) -> None:
    assert not is_secret_field(name)


def test_data_masks_secret_fields_whatever_their_value_and_keeps_the_rest() -> None:
    data = {
        "user": "default",
        "password": "unknown-to-the-scrubber",
        "nested": [{"token": {"a": 1}}, {"msg": "with hunter2 inside"}],
        "no_password": None,
        "password_changed": False,
        "count": 3,
    }
    assert Scrubber(["hunter2"]).data(data) == {
        "user": "default",
        "password": MASK,
        "nested": [{"token": MASK}, {"msg": f"with {MASK} inside"}],
        "no_password": None,
        "password_changed": False,
        "count": 3,
    }
