# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_revocation: the status of a certificate against base + delta CRL (RFC 5280 5.3.1: removeFromCRL lifts a hold)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest

pytest.importorskip('cryptography')

from cryptography import x509  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v  # noqa: E402
from ansible_collections.adcs.enrollment.plugins.module_utils import _revocation  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import crl_pki as P  # noqa: E402

CA = P.Ca()
OTHER = P.Ca('OTHER-CA', key_name='other')
DAY = datetime.timedelta(days=1)


def test_status_not_revoked():
    leaf = CA.leaf(serial=0x51)
    status = _revocation.revocation_status(leaf, CA.crl(revoked=[(0x52, None, None)]), issuer_cert=CA.cert)
    assert status == {'serial_number': '51', 'revoked': False, 'reason': None, 'reason_code': None,
                      'revocation_date': None, 'source': None, 'on_hold': False}


def test_status_revoked_in_base():
    leaf = CA.leaf(serial=0x51)
    base = CA.crl(revoked=[(0x51, x509.ReasonFlags.key_compromise, P.NOW - 2 * DAY)])
    status = _revocation.revocation_status(leaf, base, CA.crl(number=2, delta_of=1), CA.cert)
    assert status['revoked'] is True and status['reason'] == 'keyCompromise' and status['reason_code'] == 1
    assert status['revocation_date'] == '2026-11-26T12:00:00Z' and status['source'] == 'base'


def test_status_revoked_in_delta_only_without_reason():
    leaf = CA.leaf(serial=0x51)
    delta = CA.crl(number=2, delta_of=1, revoked=[(0x51, None, P.NOW - DAY)])
    status = _revocation.revocation_status(leaf, CA.crl(number=1), delta)
    assert status['revoked'] is True and status['source'] == 'delta'
    assert status['reason'] == 'unspecified' and status['reason_code'] == 0


def test_hold_then_removed_from_crl():
    leaf = CA.leaf(serial=0x51)
    base = CA.crl(number=1, revoked=[(0x51, x509.ReasonFlags.certificate_hold, None)])
    on_hold = _revocation.revocation_status(leaf, base)
    assert on_hold['revoked'] is True and on_hold['on_hold'] is True
    delta = CA.crl(number=2, delta_of=1, revoked=[(0x51, x509.ReasonFlags.remove_from_crl, None)])
    released = _revocation.revocation_status(leaf, base, delta)
    assert released['revoked'] is False and released['reason'] == 'removeFromCRL' and released['source'] == 'delta'


def test_status_of_certificate_from_another_ca():
    with pytest.raises(v.CrlError, match='cannot tell its status'):
        _revocation.revocation_status(OTHER.leaf(), CA.crl())
