# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _hresults as h


@pytest.mark.parametrize('code', h.known_codes())
def test_every_table_entry_is_complete(code):
    info = h.describe_hresult(code)
    assert info.code == code
    assert info.name and info.name.upper() == info.name and ' ' not in info.name
    assert info.meaning.endswith('.')
    assert info.remedy


def test_certsrv_range_covered():
    names = set(h.describe_hresult(c).name for c in h.known_codes())
    for n in ('CERTSRV_E_TEMPLATE_DENIED', 'CERTSRV_E_ENROLL_DENIED', 'CERTSRV_E_UNSUPPORTED_CERT_TYPE',
              'CERTSRV_E_KEY_LENGTH', 'CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE', 'CERTSRV_E_SUBJECT_ALT_NAME_REQUIRED',
              'E_ACCESSDENIED', 'E_INVALIDARG', 'RPC_S_SEC_PKG_ERROR', 'RPC_S_SERVER_UNAVAILABLE',
              'RPC_E_ACCESS_DENIED', 'E_NOINTERFACE'):
        assert n in names
    # the whole contiguous CERTSRV_E_ ranges 0x80094001-0x80094013 and 0x80094800-0x80094817
    for c in list(range(0x80094001, 0x80094014)) + list(range(0x80094800, 0x80094818)):
        assert h.describe_hresult(c).name.startswith('CERTSRV_E_'), hex(c)


def test_dispositions():
    assert h.CR_DISP_ISSUED == 3 and h.CR_DISP_UNDER_SUBMISSION == 5 and h.CR_DISP_DENIED == 2
    assert h.disposition_name(3) == 'issued'
    assert h.disposition_name(5) == 'pending'
    assert h.disposition_name(0x80094012) == 'error'
    assert h.disposition_name(77) == 'unknown(77)'
    assert h.disposition_name(None) == 'unknown'
