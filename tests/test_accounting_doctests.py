"""The examples in pate.accounting's docstrings run and give what they say."""

from __future__ import annotations

import doctest

import pytest

import pate.accounting.conversion
import pate.accounting.rdp
import pate.accounting.subsampled


@pytest.mark.parametrize(
    "module", [pate.accounting.rdp, pate.accounting.conversion, pate.accounting.subsampled]
)
def test_docstring_examples(module):
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0
