# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_template_flags: the MS-CRTD tables are well formed (one bit per name, ordered, no name twice) and carry the
values the specification gives for the flags the collection acts on."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _template_flags as f

TABLES = [f.GENERAL_FLAGS, f.ENROLLMENT_FLAGS, f.PRIVATE_KEY_FLAGS, f.NAME_FLAGS]


@pytest.mark.parametrize('table', TABLES)
def test_tables_are_single_bits_in_order_with_unique_names(table):
    values = [value for value, _name in table]
    names = [name for _value, name in table]
    assert values == sorted(values) and len(set(values)) == len(values)
    assert len(set(names)) == len(names)
    assert all(value and value & (value - 1) == 0 for value in values)


def test_values_of_the_flags_the_collection_acts_on():
    enrollment = dict((name, value) for value, name in f.ENROLLMENT_FLAGS)
    names = dict((name, value) for value, name in f.NAME_FLAGS)
    private_key = dict((name, value) for value, name in f.PRIVATE_KEY_FLAGS)
    assert enrollment['CT_FLAG_PEND_ALL_REQUESTS'] == 0x2                      # MS-CRTD 2.26
    assert enrollment['CT_FLAG_AUTO_ENROLLMENT'] == 0x20
    assert names['CT_FLAG_ENROLLEE_SUPPLIES_SUBJECT'] == 0x1                   # MS-CRTD 2.28
    assert names['CT_FLAG_OLD_CERT_SUPPLIES_SUBJECT_AND_ALT_NAME'] == 0x8
    assert names['CT_FLAG_SUBJECT_ALT_REQUIRE_DNS'] == 0x08000000
    assert private_key['CT_FLAG_REQUIRE_PRIVATE_KEY_ARCHIVAL'] == 0x1          # MS-CRTD 2.27
    assert f.KEY_SPECS == {1: 'AT_KEYEXCHANGE', 2: 'AT_SIGNATURE'}
