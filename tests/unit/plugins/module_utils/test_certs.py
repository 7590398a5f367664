# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from ansible_collections.adcs.enrollment.plugins.module_utils import _certs as c
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError

import wcce_pki
from wcce_pki import NOW

DAY = datetime.timedelta(days=1)


@pytest.fixture(scope='module')
def pki():
    return wcce_pki.pki()


def _leaf(pki, **kw):
    kw.setdefault('sans', ['DNS:host.lab.adcs.test', 'UPN:host$@LAB.ADCS.TEST', 'IP:127.0.0.5'])
    kw.setdefault('template_name', 'Machine')
    kw.setdefault('template_oid', '1.3.6.1.4.1.311.21.8.1.2')
    return pki.issue(kw.pop('cn', 'host.lab.adcs.test'), kw.pop('key', pki.leaf_key), **kw)


# ---------------------------------------------------------------- loading
def test_load_pem_der_and_bundles(pki):
    pem = pki.leaf.public_bytes(serialization.Encoding.PEM)
    der = pki.leaf.public_bytes(serialization.Encoding.DER)
    assert c.load_certificate(pem) == pki.leaf
    assert c.load_certificate(der) == pki.leaf
    assert c.load_certificate(pem.decode()) == pki.leaf
    bundle = b''.join(x.public_bytes(serialization.Encoding.PEM) for x in (pki.leaf, pki.ca, pki.root))
    assert c.load_certificates(bundle) == [pki.leaf, pki.ca, pki.root]
    assert c.load_certificates(der) == [pki.leaf]
    with pytest.raises(CertificateError):
        c.load_certificate(b'garbage')


def test_parse_pkcs7_degenerate_chain(pki):
    # DER sorts the SET OF certificates, so the stored order is not the chain order: compare as sets and let
    # order_chain() put them in issuing order
    der = pkcs7.serialize_certificates([pki.leaf, pki.ca, pki.root], serialization.Encoding.DER)
    got = c.parse_pkcs7_certificates(der)
    assert sorted(got, key=lambda x: x.serial_number) == [pki.root, pki.ca, pki.leaf]
    assert c.order_chain(pki.leaf, got) == [pki.ca, pki.root]
    pem = pkcs7.serialize_certificates([pki.ca], serialization.Encoding.PEM)
    assert c.parse_pkcs7_certificates(pem) == [pki.ca]
    assert c.load_certificates(der) == got
    assert c.load_certificates(pem) == [pki.ca]


def test_parse_pkcs7_without_certificates():
    # ContentInfo{signedData, SignedData{version 1, digestAlgorithms {}, contentInfo{data}, signerInfos {}}}
    from pyasn1.codec.der import encoder
    from pyasn1.type import univ
    from pyasn1_modules import rfc2315
    signed = rfc2315.SignedData()
    signed['version'] = 1
    signed['digestAlgorithms'].clear()
    signed['contentInfo']['contentType'] = univ.ObjectIdentifier('1.2.840.113549.1.7.1')
    signed['signerInfos'].clear()
    ci = rfc2315.ContentInfo()
    ci['contentType'] = univ.ObjectIdentifier('1.2.840.113549.1.7.2')
    ci['content'] = univ.Any(encoder.encode(signed))
    sd = encoder.encode(ci)
    assert c.parse_pkcs7_certificates(sd) == []


def test_parse_pkcs7_garbage():
    with pytest.raises(CertificateError):
        c.parse_pkcs7_certificates(b'\x30\x03\x02\x01\x01')


# ---------------------------------------------------------------- facts
def test_certificate_facts(pki):
    leaf = _leaf(pki, serial=0xABCDEF)
    facts = c.certificate_facts(leaf)
    assert facts['subject'] == 'CN=host.lab.adcs.test'
    assert facts['issuer'] == 'CN=LAB-CA'
    assert facts['serial_number'] == 'ABCDEF'
    assert facts['subject_alt_names'] == ['DNS:host.lab.adcs.test', 'IP:127.0.0.5', 'UPN:host$@LAB.ADCS.TEST']
    assert facts['template'] == {'name': 'Machine', 'oid': '1.3.6.1.4.1.311.21.8.1.2', 'major_version': 100,
                                 'minor_version': 4}
    assert facts['public_key'] == {'type': 'rsa', 'size': 2048}
    assert facts['not_before'] == (NOW - DAY).strftime('%Y-%m-%dT%H:%M:%SZ')
    fp = leaf.fingerprint(hashes.SHA256()).hex().upper()
    assert facts['fingerprint_sha256'].replace(':', '') == fp
    assert facts['is_ca'] is False
    assert c.certificate_facts(pki.ca)['is_ca'] is True
    assert c.certificate_facts(pki.ca)['public_key'] == {'type': 'ecdsa', 'curve': 'secp256r1'}


def test_template_absent(pki):
    assert c.certificate_template(pki.root) == {'name': None, 'oid': None, 'major_version': None,
                                                'minor_version': None}


def test_key_match(pki):
    assert c.key_matches_certificate(pki.leaf_key, pki.leaf)
    assert not c.key_matches_certificate(pki.ca_key, pki.leaf)
    assert not c.key_matches_certificate(None, pki.leaf)


# ---------------------------------------------------------------- chains
def test_verify_chain_ok(pki):
    path = c.verify_chain(pki.leaf, [pki.ca, pki.root], now=NOW)
    assert path == [pki.leaf, pki.ca, pki.root]
    assert c.verify_chain(pki.leaf, [pki.root, pki.ca], trust_anchors=[pki.root], now=NOW)[-1] == pki.root
    # an intermediate can be the anchor
    assert c.verify_chain(pki.leaf, [], trust_anchors=[pki.ca], now=NOW) == [pki.leaf, pki.ca]


def test_verify_chain_bad_signature(pki):
    # same issuer name and AKI, but signed by a different key
    rogue_key = wcce_pki.ec_key('rogue')
    forged = wcce_pki.make_cert('host.lab.adcs.test', pki.leaf_key, issuer=pki.ca, issuer_key=rogue_key, ski=False)
    with pytest.raises(CertificateError, match='does not verify'):
        c.verify_chain(forged, [pki.ca, pki.root], now=NOW)


def test_verify_chain_missing_issuer(pki):
    with pytest.raises(CertificateError, match='not among the CA certificates'):
        c.verify_chain(pki.leaf, [pki.root], now=NOW)


def test_verify_chain_untrusted_root(pki):
    other_root = wcce_pki.make_cert('Other Root', wcce_pki.rsa_key('other'), ca=True, serial=5)
    with pytest.raises(CertificateError, match='not a trusted CA'):
        c.verify_chain(pki.leaf, [pki.ca, pki.root], trust_anchors=[other_root], now=NOW)


def test_verify_chain_aki_mismatch_is_skipped(pki):
    # a CA with the same name but another key: rejected by AKI/SKI, the right one is found
    impostor = wcce_pki.make_cert('LAB-CA', wcce_pki.ec_key('imp'), issuer=pki.root, issuer_key=pki.root_key,
                                  ca=True, serial=3)
    assert c.verify_chain(pki.leaf, [impostor, pki.ca, pki.root], now=NOW) == [pki.leaf, pki.ca, pki.root]


def test_verify_chain_expired(pki):
    with pytest.raises(CertificateError, match='not valid at'):
        c.verify_chain(pki.leaf, [pki.ca, pki.root], now=NOW + datetime.timedelta(days=400))
    assert c.verify_chain(pki.leaf, [pki.ca, pki.root], now=NOW + datetime.timedelta(days=400),
                          check_validity=False)


def test_order_chain(pki):
    assert c.order_chain(pki.leaf, [pki.root, pki.leaf, pki.ca]) == [pki.ca, pki.root]
    assert c.order_chain(pki.leaf, [pki.root]) == []
