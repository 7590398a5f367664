# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""X.509 (_x509): loading, encodings, facts, SANs, key match."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from ansible_collections.adcs.enrollment.plugins.module_utils import _chain
from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError, InvalidInput
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.wcce_pki import NOW, machine_leaf as _leaf

DAY = datetime.timedelta(days=1)


# ---------------------------------------------------------------- loading
def test_load_pem_der_and_bundles(pki):
    pem = pki.leaf.public_bytes(serialization.Encoding.PEM)
    der = pki.leaf.public_bytes(serialization.Encoding.DER)
    assert _x509.load_certificate(pem) == pki.leaf
    assert _x509.load_certificate(der) == pki.leaf
    assert _x509.load_certificate(pem.decode()) == pki.leaf
    bundle = b''.join(x.public_bytes(serialization.Encoding.PEM) for x in (pki.leaf, pki.ca, pki.root))
    assert _x509.load_certificates(bundle) == [pki.leaf, pki.ca, pki.root]
    assert _x509.load_certificates(der) == [pki.leaf]
    with pytest.raises(CertificateError):
        _x509.load_certificate(b'garbage')


def test_parse_pkcs7_degenerate_chain(pki):
    # DER sorts the SET OF certificates, so the stored order is not the chain order: compare as sets and let
    # order_chain() put them in issuing order
    der = pkcs7.serialize_certificates([pki.leaf, pki.ca, pki.root], serialization.Encoding.DER)
    got = _x509.parse_pkcs7_certificates(der)
    assert sorted(got, key=lambda x: x.serial_number) == [pki.root, pki.ca, pki.leaf]
    assert _chain.order_chain(pki.leaf, got) == [pki.ca, pki.root]
    pem = pkcs7.serialize_certificates([pki.ca], serialization.Encoding.PEM)
    assert _x509.parse_pkcs7_certificates(pem) == [pki.ca]
    assert _x509.load_certificates(der) == got
    assert _x509.load_certificates(pem) == [pki.ca]


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
    assert _x509.parse_pkcs7_certificates(sd) == []


def test_parse_pkcs7_garbage():
    with pytest.raises(CertificateError):
        _x509.parse_pkcs7_certificates(b'\x30\x03\x02\x01\x01')


# ---------------------------------------------------------------- facts
def test_certificate_facts(pki):
    leaf = _leaf(pki, serial=0xABCDEF)
    facts = _x509.certificate_facts(leaf)
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
    assert facts['fingerprint_sha1'].replace(':', '') == leaf.fingerprint(hashes.SHA1()).hex().upper()
    assert sorted(facts) == ['extended_key_usage', 'fingerprint_sha1', 'fingerprint_sha256', 'is_ca', 'issuer',
                             'not_after', 'not_before', 'public_key', 'serial_number', 'subject',
                             'subject_alt_names', 'template']   # the one schema every module returns
    assert facts['is_ca'] is False
    assert _x509.certificate_facts(pki.ca)['is_ca'] is True
    assert _x509.certificate_facts(pki.ca)['public_key'] == {'type': 'ecdsa', 'curve': 'secp256r1'}


def test_template_absent(pki):
    assert _x509.certificate_template(pki.root) == {'name': None, 'oid': None, 'major_version': None,
                                                    'minor_version': None}


def test_key_match(pki):
    assert _x509.key_matches_certificate(pki.leaf_key, pki.leaf)
    assert not _x509.key_matches_certificate(pki.ca_key, pki.leaf)
    assert not _x509.key_matches_certificate(None, pki.leaf)


# ---------------------------------------------------------------- SANs
def test_normalize_sans():
    got = _x509.normalize_sans(['DNS:Host.Lab.ADCS.test.', 'IP:10.0.0.01'.replace('01', '1'), 'UPN:User@LAB.ADCS.TEST',
                                'email:a@B.example', 'URI:https://x.example/p', 'ip:::1',
                                ('dns', 'host.lab.adcs.test')])
    assert got == sorted([('dns', 'host.lab.adcs.test'), ('ip', '10.0.0.1'), ('upn', 'User@LAB.ADCS.TEST'),
                          ('email', 'a@b.example'), ('uri', 'https://x.example/p'), ('ip', '::1')])
    assert _x509.normalize_sans({'dns': ['b.example', 'a.example']}) == [('dns', 'a.example'), ('dns', 'b.example')]
    assert _x509.normalize_sans(None) == []


@pytest.mark.parametrize('bad', [['host'], ['XYZ:1'], ['DNS:bad host'], ['IP:300.1.1.1'], ['UPN:nouser'],
                                 ['DNS:a&b'], ['URI:noscheme'], ['email:'], [object()]])
def test_normalize_sans_errors(bad):
    with pytest.raises(InvalidInput):
        _x509.normalize_sans(bad)


# ---------------------------------------------------------------- encodings
def test_encodings_and_pkcs12():
    p = wcce_pki.pki()
    assert _x509.encode_certificate(p.leaf, 'pem').startswith(b'-----BEGIN CERTIFICATE-----')
    assert _x509.encode_certificate(p.leaf, 'der') == p.leaf.public_bytes(serialization.Encoding.DER)
    chain_pem = _x509.encode_chain([p.ca, p.root], 'pem')
    assert _x509.load_certificates(chain_pem) == [p.ca, p.root]
    chain_der = _x509.encode_chain([p.ca, p.root], 'der')
    assert set(c.serial_number for c in _x509.parse_pkcs7_certificates(chain_der)) == {1, 2}
    with pytest.raises(InvalidInput):
        _x509.encode_certificate(p.leaf, 'xml')
    bundle = _x509.pkcs12_bundle(p.leaf_key, p.leaf, [p.ca, p.root], passphrase='pw', friendly_name='host')
    key, cert, extra = _x509.load_pkcs12(bundle, 'pw')
    assert cert == p.leaf and _x509.key_matches_certificate(key, cert) and set(extra) == {p.ca, p.root}
    with pytest.raises(InvalidInput):
        _x509.load_pkcs12(bundle, 'wrong')
    enc = _keys.private_key_bytes(p.leaf_key, 'pem', passphrase='pw')
    assert b'ENCRYPTED PRIVATE KEY' in enc


def test_certificates_with_text_around_and_base64_der(pki):
    pem = b''.join(_x509.encode_certificate(c) for c in (pki.leaf, pki.ca))
    assert _x509.load_certificates(b'Bag Attributes\n  friendlyName: x\n' + pem + b'trailing text\n') == \
        [pki.leaf, pki.ca]
    import base64
    b64 = base64.encodebytes(_x509.encode_certificate(pki.ca, 'der'))
    assert _x509.load_certificates(b64, base64_der=True) == [pki.ca]
    with pytest.raises(CertificateError):
        _x509.load_certificates(b64)
    assert _x509.pem_blocks(b'  ' + pem) == [_x509.encode_certificate(pki.leaf), _x509.encode_certificate(pki.ca)]
