# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The idempotency decision (_certs.needs_enrollment; moves to _renewal)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _certs
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.wcce_pki import NOW, machine_leaf as _leaf

DAY = datetime.timedelta(days=1)


# ---------------------------------------------------------------- idempotency
WANT = dict(wanted_subject='CN=host.lab.adcs.test', wanted_sans=['DNS:host.lab.adcs.test'],
            wanted_template='Machine', renew_before_days=30, now=NOW)


def test_up_to_date(pki):
    leaf = _leaf(pki)
    needed, reason = _certs.needs_enrollment(leaf, pki.leaf_key, **WANT)
    assert needed is False and reason.code == _certs.REASON_OK
    # OID form and dict form of the template, case-insensitive subject
    assert not _certs.needs_enrollment(leaf, pki.leaf_key, wanted_template='1.3.6.1.4.1.311.21.8.1.2', now=NOW)[0]
    assert not _certs.needs_enrollment(leaf, pki.leaf_key, wanted_template={'name': 'machine'},
                                       wanted_subject={'CN': 'HOST.lab.adcs.test'}, now=NOW)[0]


@pytest.mark.parametrize('case, code', [
    ('force', _certs.REASON_FORCE),
    ('no_cert', _certs.REASON_NO_CERT),
    ('no_key', _certs.REASON_NO_KEY),
    ('mismatch', _certs.REASON_KEY_MISMATCH),
    ('expired', _certs.REASON_EXPIRED),
    ('window', _certs.REASON_RENEW_WINDOW),
    ('subject', _certs.REASON_SUBJECT),
    ('sans', _certs.REASON_SANS),
    ('sans_exact', _certs.REASON_SANS),
    ('template', _certs.REASON_TEMPLATE),
    ('template_oid', _certs.REASON_TEMPLATE),
    ('no_template', _certs.REASON_TEMPLATE),
    ('key_params', _certs.REASON_KEY_PARAMS),
])
def test_each_reason(pki, case, code):
    leaf = _leaf(pki)
    args = dict(WANT)
    cert, key = leaf, pki.leaf_key
    if case == 'force':
        args['force'] = True
    elif case == 'no_cert':
        cert = None
    elif case == 'no_key':
        key = None
    elif case == 'mismatch':
        key = pki.ca_key
    elif case == 'expired':
        args['now'] = NOW + datetime.timedelta(days=365)
    elif case == 'window':
        args['now'] = NOW + datetime.timedelta(days=340)   # 24 days left, window 30
    elif case == 'subject':
        args['wanted_subject'] = 'CN=other.lab.adcs.test'
    elif case == 'sans':
        args['wanted_sans'] = ['DNS:host.lab.adcs.test', 'DNS:www.lab.adcs.test']
    elif case == 'sans_exact':
        args['sans_exact'] = True
    elif case == 'template':
        args['wanted_template'] = 'WebServer'
    elif case == 'template_oid':
        args['wanted_template'] = '1.3.6.1.4.1.311.21.8.9.9'
    elif case == 'no_template':
        cert = _leaf(pki, template_name=None, template_oid=None)
    elif case == 'key_params':
        args['key_params'] = {'key_type': 'ecdsa', 'curve': 'secp256r1'}
    needed, reason = _certs.needs_enrollment(cert, key, **args)
    assert needed is True
    assert reason.code == code
    assert isinstance(reason, str) and len(reason) > 10


def test_window_boundary(pki):
    leaf = _leaf(pki)
    end = _x509.not_after(leaf)
    assert not _certs.needs_enrollment(leaf, pki.leaf_key, renew_before_days=30,
                                       now=end - datetime.timedelta(days=30, seconds=1))[0]
    assert _certs.needs_enrollment(leaf, pki.leaf_key, renew_before_days=30, now=end - datetime.timedelta(days=30))[0]


def test_extra_sans_tolerated_unless_exact(pki):
    leaf = _leaf(pki)
    assert not _certs.needs_enrollment(leaf, pki.leaf_key, wanted_sans=['DNS:HOST.lab.adcs.test'], now=NOW)[0]
    needed, reason = _certs.needs_enrollment(leaf, pki.leaf_key, wanted_sans=['DNS:host.lab.adcs.test'], now=NOW,
                                             sans_exact=True)
    assert needed and 'unexpected' in reason and 'UPN:host$@LAB.ADCS.TEST' in reason


def test_naive_now_is_utc(pki):
    leaf = _leaf(pki)
    assert not _certs.needs_enrollment(leaf, pki.leaf_key, now=NOW.replace(tzinfo=None))[0]
