# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_crl_validate: parsing, validation against the CA certificate, delta CRLs (RFC 5280 5.2.4), CRL-number rollback,
an AIA issuer anchored."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import datetime

import pytest

pytest.importorskip('cryptography')

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.serialization import pkcs7, Encoding  # noqa: E402

from ansible_collections.adcs.enrollment.plugins.module_utils import _crl_validate as v  # noqa: E402
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import crl_pki as P  # noqa: E402

CA = P.Ca()
OTHER = P.Ca('OTHER-CA', key_name='other')
SEC_CA = P.Ca('SEC-CA', key_name='sec')
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
def _applies(delta, base):
    try:
        v.check_delta_against_base(delta, base)
    except v.CrlError:
        return False
    return True


def test_delta_applies_to_base_at_or_after_its_indicator():
    """A delta CRL (number 9, indicator 5) applies exactly to the bases numbered 5 up to 8: at or after its
    indicator, older than itself."""
    delta = CA.crl(number=9, delta_of=5)
    assert [n for n in range(1, 13) if _applies(delta, CA.crl(number=n))] == [5, 6, 7, 8]
    assert _applies(CA.crl(number=6, delta_of=5), CA.crl(number=5))
    # the same numbers from another issuer, or a complete CRL as the "delta": never
    assert not _applies(OTHER.crl(number=9, delta_of=5), CA.crl(number=7))
    assert not _applies(CA.crl(number=9), CA.crl(number=7))


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


# ---- CRL-number rollback ----
def test_older_crl_of_the_same_issuer_and_key_is_refused():
    newer, older = SEC_CA.crl(number=20), SEC_CA.crl(number=19)
    with pytest.raises(v.CrlError) as err:
        v.check_not_rolled_back(newer, older, SEC_CA.cert)
    assert str(err.value) == ('the fetched CRL (CRL number 19) is older than the one already there (CRL number 20, '
                              'same issuer and key)')
    v.check_not_rolled_back(older, newer, SEC_CA.cert)         # forward: fine
    v.check_not_rolled_back(newer, SEC_CA.crl(number=20), SEC_CA.cert)   # same number: fine


def test_rollback_check_only_compares_the_same_issuer_and_key():
    newer = SEC_CA.crl(number=20)
    other_ca = P.Ca('OTHER-CA', key_name='other')
    v.check_not_rolled_back(other_ca.crl(number=50), newer, SEC_CA.cert)
    # the same name, another key (renewed SEC_CA): its numbers are another sequence
    renewed = P.Ca('SEC-CA', key_name='sec-renewed')
    v.check_not_rolled_back(renewed.crl(number=50), newer, SEC_CA.cert)
    # a CRL on disk with the right name and AKI but not signed by the CA is no evidence (a planted file cannot
    # block updates)
    forged = SEC_CA.crl(number=10 ** 6, signer=P.key('forger'))
    v.check_not_rolled_back(forged, newer, SEC_CA.cert)
    with pytest.raises(v.CrlError):
        v.check_not_rolled_back(forged, newer)        # without the CA certificate the number counts


# ---- an issuer from AIA must be, or be issued by, a trust anchor ----
def test_check_anchored():
    sub = P.intermediate(SEC_CA)
    v.check_anchored(SEC_CA.cert, [SEC_CA.cert])
    v.check_anchored(sub.cert, [SEC_CA.cert])
    with pytest.raises(v.CrlError, match='is not trusted'):
        v.check_anchored(sub.cert, [])
    # a root that is not a CA certificate cannot vouch for anything
    not_ca_root = P.intermediate(SEC_CA, 'NOT-A-CA', 'not-ca', ca=False)
    grandchild = P.intermediate(not_ca_root, 'GRANDCHILD', 'grandchild')
    with pytest.raises(v.CrlError, match='"CN=GRANDCHILD,DC=test" is not trusted'):
        v.check_anchored(grandchild.cert, [not_ca_root.cert])
    # a certificate the anchor issued but that is no CA
    with pytest.raises(v.CrlError) as err:
        v.check_anchored(not_ca_root.cert, [SEC_CA.cert])
    assert str(err.value) == '"CN=NOT-A-CA,DC=test" is not a CA certificate'
    # the anchor's name on a certificate another key signed
    forged = P.intermediate(P.Ca('SEC-CA', key_name='attacker'), 'SEC-SUB-CA', 'sec-sub-forged')
    with pytest.raises(v.CrlError, match='is not trusted'):
        v.check_anchored(forged.cert, [SEC_CA.cert])
