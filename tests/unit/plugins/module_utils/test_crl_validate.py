# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_crl_validate: parsing, validation against the CA certificate, delta CRLs (RFC 5280 5.2.4), revocation status."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime
import os
import sys

import pytest

pytest.importorskip('cryptography')

from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs7, Encoding

sys.path.insert(0, os.path.dirname(__file__))
import crl_pki as P  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v  # noqa: E402

CA = P.Ca()
OTHER = P.Ca('OTHER-CA', key_name='other')
DAY = datetime.timedelta(days=1)


# ---- parsing ----
@pytest.mark.parametrize('encode', [P.der, P.pem, lambda c: base64.b64encode(P.der(c)),
                                    lambda c: P.pem(c).decode('ascii')])
def test_load_crl_formats(encode):
    crl = CA.crl(number=7)
    assert v.crl_number(v.load_crl(encode(crl))) == 7


@pytest.mark.parametrize('data', [b'', b'   ', b'<html>not found</html>', b'\x30\x03\x02\x01\x01'])
def test_load_crl_rejects_garbage(data):
    with pytest.raises(v.CrlError):
        v.load_crl(data)


def test_load_certificates_pem_der_pkcs7():
    assert v.load_certificate(CA.pem).subject == CA.name
    assert v.load_certificate(CA.der).subject == CA.name
    bundle = pkcs7.serialize_certificates([OTHER.cert, CA.cert], Encoding.DER)
    assert sorted(c.subject.rfc4514_string() for c in v.load_certificates(bundle)) == ['CN=OTHER-CA,DC=test', 'CN=TEST-CA,DC=test']
    assert len(v.load_certificates(CA.pem + OTHER.pem)) == 2
    with pytest.raises(v.CrlError):
        v.load_certificate(b'nonsense')


def test_crl_facts():
    crl = CA.crl(number=12, revoked=[(0xABC, x509.ReasonFlags.key_compromise, P.NOW - DAY), (0xDEF, None, None)],
                 freshest=['http://x/ca+.crl'])
    facts = v.crl_facts(crl, include_entries=True)
    assert facts['issuer'] == 'CN=TEST-CA,DC=test'
    assert facts['crl_number'] == 12 and facts['revoked_count'] == 2 and facts['is_delta'] is False
    assert facts['next_update'] == '2026-12-05T12:00:00Z' and facts['this_update'] == '2026-11-28T11:00:00Z'
    assert facts['freshest_crl_urls'] == ['http://x/ca+.crl']
    entries = dict((e['serial_number'], e) for e in facts['entries'])
    assert entries['ABC']['reason'] == 'keyCompromise' and entries['ABC']['reason_code'] == 1
    assert entries['ABC']['revocation_date'] == '2026-11-27T12:00:00Z'
    assert entries['DEF']['reason'] is None
    assert 'entries' not in v.crl_facts(crl)


# ---- validation ----
def test_valid_crl():
    assert v.validate_crl(CA.crl(), CA.cert, now=P.NOW) == []


def test_tampered_crl_signature_rejected():
    data = bytearray(P.der(CA.crl(revoked=[(0x1234, None, None)])))
    index = bytes(data).index(b'\x12\x34')   # the revoked serial: alter the signed content
    data[index] ^= 0x01
    crl = v.load_crl(bytes(data))
    with pytest.raises(v.CrlError, match='signature is invalid'):
        v.validate_crl(crl, CA.cert, now=P.NOW)


def test_crl_signed_by_another_key_with_the_same_name():
    impostor = CA.crl(signer=P.key('impostor'), aki=False)
    with pytest.raises(v.CrlError, match='signature is invalid'):
        v.validate_crl(impostor, CA.cert, now=P.NOW)


def test_issuer_mismatch():
    with pytest.raises(v.CrlError, match='issued by "CN=OTHER-CA'):
        v.validate_crl(OTHER.crl(), CA.cert, now=P.NOW)


def test_aki_mismatch():
    builder_aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(P.key('other').public_key())
    crl = CA.crl(aki=False, extra=[(builder_aki, False)])
    with pytest.raises(v.CrlError, match='authority key identifier'):
        v.validate_crl(crl, CA.cert, now=P.NOW)


def test_ca_without_crl_sign():
    no_sign = P.Ca('NOSIGN-CA', key_name='nosign', crl_sign=False)
    with pytest.raises(v.CrlError, match='cRLSign'):
        v.validate_crl(no_sign.crl(), no_sign.cert, now=P.NOW)


def test_unknown_critical_extension_rejected():
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier('1.3.6.1.4.1.99999.1'), b'\x05\x00')
    with pytest.raises(v.CrlError, match='unsupported critical extension'):
        v.validate_crl(CA.crl(extra=[(ext, True)]), CA.cert, now=P.NOW)
    assert v.validate_crl(CA.crl(extra=[(ext, False)]), CA.cert, now=P.NOW) == []


def test_no_issuer_certificate():
    with pytest.raises(v.CrlError, match='no issuing CA certificate'):
        v.validate_crl(CA.crl(), None)


def test_stale_crl_fail_warn_ignore():
    stale = CA.crl(this_update=P.NOW - 10 * DAY, next_update=P.NOW - DAY)
    with pytest.raises(v.CrlStale, match='stale: nextUpdate 2026-11-27T12:00:00Z has passed'):
        v.validate_crl(stale, CA.cert, now=P.NOW, freshness='fail')
    warnings = v.validate_crl(stale, CA.cert, now=P.NOW, freshness='warn')
    assert len(warnings) == 1 and 'stale' in warnings[0]
    assert v.validate_crl(stale, CA.cert, now=P.NOW, freshness='ignore') == []


def test_freshness_clock_skew_and_future():
    just_expired = CA.crl(next_update=P.NOW - datetime.timedelta(minutes=2))
    assert v.validate_crl(just_expired, CA.cert, now=P.NOW) == []      # within the 5 minute skew
    future = CA.crl(this_update=P.NOW + DAY, next_update=P.NOW + 3 * DAY)
    with pytest.raises(v.CrlStale, match='future'):
        v.validate_crl(future, CA.cert, now=P.NOW)


def test_expect_delta_or_base():
    base, delta = CA.crl(number=5), CA.crl(number=6, delta_of=5)
    with pytest.raises(v.CrlError, match='expected a delta CRL'):
        v.validate_crl(base, CA.cert, now=P.NOW, expect_delta=True)
    with pytest.raises(v.CrlError, match='expected a complete'):
        v.validate_crl(delta, CA.cert, now=P.NOW, expect_delta=False)
    assert v.validate_crl(delta, CA.cert, now=P.NOW, expect_delta=True) == []
    assert v.is_delta(delta) and v.delta_base_number(delta) == 5


# ---- delta against base (RFC 5280 5.2.4) ----
def test_delta_applies_to_base_at_or_after_its_indicator():
    v.check_delta_against_base(CA.crl(number=6, delta_of=5), CA.crl(number=5))
    v.check_delta_against_base(CA.crl(number=9, delta_of=5), CA.crl(number=7))   # newer base, still older than delta


def test_delta_needs_newer_base():
    with pytest.raises(v.CrlError, match='needs base CRL number 5 or later, the base CRL is number 4'):
        v.check_delta_against_base(CA.crl(number=6, delta_of=5), CA.crl(number=4))


def test_delta_older_than_base():
    with pytest.raises(v.CrlError, match='not newer than the base'):
        v.check_delta_against_base(CA.crl(number=6, delta_of=5), CA.crl(number=8))


def test_delta_of_another_issuer():
    with pytest.raises(v.CrlError, match='differs from the base CRL issuer'):
        v.check_delta_against_base(OTHER.crl(number=6, delta_of=5), CA.crl(number=5))


def test_delta_indicator_must_be_critical():
    crl = CA.crl(number=6, extra=[(x509.DeltaCRLIndicator(5), False)])
    with pytest.raises(v.CrlError, match='must be critical'):
        v.validate_crl(crl, CA.cert, now=P.NOW)


# ---- revocation status ----
def test_status_not_revoked():
    leaf = CA.leaf(serial=0x51)
    status = v.revocation_status(leaf, CA.crl(revoked=[(0x52, None, None)]), issuer_cert=CA.cert)
    assert status == {'serial_number': '51', 'revoked': False, 'reason': None, 'reason_code': None,
                      'revocation_date': None, 'source': None, 'on_hold': False}


def test_status_revoked_in_base():
    leaf = CA.leaf(serial=0x51)
    base = CA.crl(revoked=[(0x51, x509.ReasonFlags.key_compromise, P.NOW - 2 * DAY)])
    status = v.revocation_status(leaf, base, CA.crl(number=2, delta_of=1), CA.cert)
    assert status['revoked'] is True and status['reason'] == 'keyCompromise' and status['reason_code'] == 1
    assert status['revocation_date'] == '2026-11-26T12:00:00Z' and status['source'] == 'base'


def test_status_revoked_in_delta_only_without_reason():
    leaf = CA.leaf(serial=0x51)
    delta = CA.crl(number=2, delta_of=1, revoked=[(0x51, None, P.NOW - DAY)])
    status = v.revocation_status(leaf, CA.crl(number=1), delta)
    assert status['revoked'] is True and status['source'] == 'delta'
    assert status['reason'] == 'unspecified' and status['reason_code'] == 0


def test_hold_then_removed_from_crl():
    leaf = CA.leaf(serial=0x51)
    base = CA.crl(number=1, revoked=[(0x51, x509.ReasonFlags.certificate_hold, None)])
    on_hold = v.revocation_status(leaf, base)
    assert on_hold['revoked'] is True and on_hold['on_hold'] is True
    delta = CA.crl(number=2, delta_of=1, revoked=[(0x51, x509.ReasonFlags.remove_from_crl, None)])
    released = v.revocation_status(leaf, base, delta)
    assert released['revoked'] is False and released['reason'] == 'removeFromCRL' and released['source'] == 'delta'


def test_status_of_certificate_from_another_ca():
    with pytest.raises(v.CrlError, match='cannot tell its status'):
        v.revocation_status(OTHER.leaf(), CA.crl())


# ---- pointers ----
def test_urls_of_certificate_and_crl():
    leaf = CA.leaf(cdp=['ldap:///CN=X?certificateRevocationList', 'http://h/x.crl', 'http://h/x.crl'],
                   freshest=['http://h/x+.crl'], aia=['http://h/ca.crt'])
    assert v.cdp_urls(leaf) == ['ldap:///CN=X?certificateRevocationList', 'http://h/x.crl']
    assert v.freshest_urls(leaf) == ['http://h/x+.crl']
    assert v.ca_issuers_urls(leaf) == ['http://h/ca.crt']
    bare = CA.leaf()
    assert v.cdp_urls(bare) == [] and v.freshest_urls(bare) == [] and v.ca_issuers_urls(bare) == []
    assert v.freshest_urls(CA.crl(freshest=['http://h/y+.crl'])) == ['http://h/y+.crl']
