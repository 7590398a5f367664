# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_renewal: whether the certificate on disk fits (needs_enrollment and its Reason codes), the renewal window and
the renewal request's fallback."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils import _renewal as r
from ansible_collections.adcs.enrollment.plugins.module_utils._wcce import EnrollmentResult
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.ca_fakes import issue

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.wcce_pki import NOW


@pytest.fixture(scope='module')
def pki():
    return wcce_pki.pki()


LEAF = dict(sans=['DNS:host.lab.adcs.test', 'UPN:host$@LAB.ADCS.TEST', 'IP:127.0.0.5'], template_name='Machine',
            template_oid='1.3.6.1.4.1.311.21.8.1.2')


def _leaf(pki, **kw):
    """The leaf of test_certs: a Machine certificate for host.lab.adcs.test with three SANs."""
    return pki.issue('host.lab.adcs.test', pki.leaf_key, **dict(LEAF, **kw))


# ---------------------------------------------------------------- does the certificate fit?
WANT = dict(wanted_subject='CN=host.lab.adcs.test', wanted_sans=['DNS:host.lab.adcs.test'],
            wanted_template='Machine', renew_before_days=30, now=NOW)


def test_up_to_date(pki):
    leaf = _leaf(pki)
    needed, reason = r.needs_enrollment(leaf, pki.leaf_key, **WANT)
    assert needed is False and reason.code == r.REASON_OK
    # OID form and dict form of the template, case-insensitive subject
    assert not r.needs_enrollment(leaf, pki.leaf_key, wanted_template='1.3.6.1.4.1.311.21.8.1.2', now=NOW)[0]
    assert not r.needs_enrollment(leaf, pki.leaf_key, wanted_template={'name': 'machine'},
                                  wanted_subject={'CN': 'HOST.lab.adcs.test'}, now=NOW)[0]


@pytest.mark.parametrize('case, code', [
    ('force', r.REASON_FORCE),
    ('no_cert', r.REASON_NO_CERT),
    ('no_key', r.REASON_NO_KEY),
    ('mismatch', r.REASON_KEY_MISMATCH),
    ('expired', r.REASON_EXPIRED),
    ('window', r.REASON_RENEW_WINDOW),
    ('subject', r.REASON_SUBJECT),
    ('sans', r.REASON_SANS),
    ('sans_exact', r.REASON_SANS),
    ('template', r.REASON_TEMPLATE),
    ('template_oid', r.REASON_TEMPLATE),
    ('no_template', r.REASON_TEMPLATE),
    ('key_params', r.REASON_KEY_PARAMS),
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
    needed, reason = r.needs_enrollment(cert, key, **args)
    assert needed is True
    assert reason.code == code
    assert isinstance(reason, str) and len(reason) > 10


def test_window_boundary(pki):
    leaf = _leaf(pki)
    end = _x509.not_after(leaf)
    assert not r.needs_enrollment(leaf, pki.leaf_key, renew_before_days=30,
                                  now=end - datetime.timedelta(days=30, seconds=1))[0]
    assert r.needs_enrollment(leaf, pki.leaf_key, renew_before_days=30, now=end - datetime.timedelta(days=30))[0]


def test_extra_sans_tolerated_unless_exact(pki):
    leaf = _leaf(pki)
    assert not r.needs_enrollment(leaf, pki.leaf_key, wanted_sans=['DNS:HOST.lab.adcs.test'], now=NOW)[0]
    needed, reason = r.needs_enrollment(leaf, pki.leaf_key, wanted_sans=['DNS:host.lab.adcs.test'], now=NOW,
                                        sans_exact=True)
    assert needed and 'unexpected' in reason and 'UPN:host$@LAB.ADCS.TEST' in reason


def test_naive_now_is_utc(pki):
    leaf = _leaf(pki)
    assert not r.needs_enrollment(leaf, pki.leaf_key, now=NOW.replace(tzinfo=None))[0]


# ---------------------------------------------------------------- the renewal window
def test_default_renew_before():
    cert = issue(wcce_pki.rsa_key('d'), days=365)
    assert r.default_renew_before(cert, 7) == (7.0, 'template')
    assert r.default_renew_before(cert) == (30.0, 'default')
    assert r.default_renew_before(None) == (30.0, 'default')
    assert r.default_renew_before(issue(wcce_pki.rsa_key('d'), days=30)) == (10.0, 'lifetime')


def test_decide_asks_the_template_only_when_the_certificate_fits(pki):
    leaf = _leaf(pki)
    asked = []

    def template_days():
        asked.append(True)
        return 400

    assert r.decide(leaf, pki.leaf_key, renew_before=3, template_days=template_days, now=NOW)[2:] == (3, 'option')
    assert asked == []
    needed, reason, days, source = r.decide(leaf, pki.leaf_key, template_days=template_days, now=NOW)
    assert (needed, reason.code, days, source) == (True, r.REASON_RENEW_WINDOW, 400.0, 'template') and asked
    needed, reason, days, source = r.decide(None, pki.leaf_key, template_days=template_days, now=NOW)
    assert (needed, reason.code, days, source) == (True, r.REASON_NO_CERT, None, None) and len(asked) == 1


def test_template_window_days():
    six_weeks = (-6 * 7 * 86400 * 10 ** 7).to_bytes(8, 'little', signed=True)
    assert r.template_window_days(six_weeks) == 42.0
    assert r.template_window_days(None) is None


# ---------------------------------------------------------------- renewal requests
def test_refused_renewal_falls_back_with_a_warning_without_remedy():
    refused = EnrollmentResult(0x8009400E, 7, 0x8009400E, 'Denied: bad renewal', None, [])
    assert r.falls_back(refused)
    assert not r.falls_back(EnrollmentResult(0x80094012, 7, 0x80094012, 'Denied by Policy Module', None, []))
    warning = r.fallback_warning(refused)
    assert warning.startswith('The CA refused the renewal request; HRESULT 0x8009400E '
                              '(CERTSRV_E_BAD_RENEWAL_CERT_ATTRIBUTE)')
    assert warning.endswith('; a new request was sent instead') and 'What to do' not in warning


def test_fallback_on_a_same_key_renewal_template_says_why():
    """0x80094816: the template wants the old key; the warning names the flag and what made the key new."""
    refused = EnrollmentResult(0x80094816, 9, 0x80094816, 'Denied by Policy Module  0x80094816, The key used in a '
                               'renewal request does not match one of the certificates being renewed.', None, [])
    assert r.falls_back(refused)
    warning = r.fallback_warning(refused)
    assert warning.startswith('The CA refused the renewal request; HRESULT 0x80094816 '
                              '(CERTSRV_E_RENEWAL_BAD_PUBLIC_KEY)')
    assert warning.endswith('; the template requires renewal with the same key (CT_FLAG_REQUIRE_SAME_KEY_RENEWAL) '
                            'and this request has a new key (regenerate_key=true or new key parameters); a new '
                            'request may have one, so a new request was sent instead')
    chaining = r.fallback_warning(EnrollmentResult(0x800B010A, 10, 0x800B010A, 'Error', None, []))
    assert chaining.endswith('; the CA cannot chain the certificate being renewed (issued by another CA or a renewed '
                             'CA key), so a new request was sent instead')


@pytest.mark.parametrize('hresult, why', [
    (0x800B0109, 'the CA cannot chain the certificate being renewed to a root it trusts'),
    (0x8009310B, 'the CA could not parse the renewal request (CMS)'),
    (0x80092010, 'the certificate being renewed is revoked'),
    (0x800B0101, 'the certificate being renewed expired meanwhile'),
])
def test_fallback_warnings_say_why(hresult, why):
    warning = r.fallback_warning(EnrollmentResult(hresult, 11, hresult, 'Error', None, []))
    assert warning.endswith('; %s, so a new request was sent instead' % why)
