"""A check the data tests share: a load that must fail with a SpecError at a given key."""

import pytest

from dlcli.errors import SpecError


def spec_error(load, key: str, *fragments: str) -> str:
    """Call `load()`; it must raise SpecError at `key` with every fragment in its message, which is returned."""
    with pytest.raises(SpecError) as info:
        load()
    assert info.value.key == key, str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)
    return str(info.value)
