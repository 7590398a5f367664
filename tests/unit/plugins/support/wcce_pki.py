# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small throw-away PKI for the enrollment-core unit tests (root -> issuing CA -> leaves)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID, ObjectIdentifier

from ansible_collections.adcs.enrollment.plugins.module_utils import _csr
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509

UTC = datetime.timezone.utc
NOW = datetime.datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)

_KEYS = {}


def rsa_key(tag='default'):
    """RSA-2048 keys cached per tag (generation is the slow part of these tests)."""
    if ('rsa', tag) not in _KEYS:
        _KEYS[('rsa', tag)] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[('rsa', tag)]


def ec_key(tag='default'):
    if ('ec', tag) not in _KEYS:
        _KEYS[('ec', tag)] = ec.generate_private_key(ec.SECP256R1())
    return _KEYS[('ec', tag)]


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_cert(subject, subject_key, issuer=None, issuer_key=None, ca=False, serial=1000, not_before=None,
              days=365, sans=None, template_name=None, template_oid=None, issuer_name=None, ski=True):
    issuer_key = issuer_key or subject_key
    not_before = not_before or (NOW - datetime.timedelta(days=1))
    builder = (x509.CertificateBuilder()
               .subject_name(subject if isinstance(subject, x509.Name) else name(subject))
               .issuer_name(issuer_name or (issuer.subject if issuer is not None else
                                            (subject if isinstance(subject, x509.Name) else name(subject))))
               .public_key(subject_key.public_key())
               .serial_number(serial)
               .not_valid_before(not_before)
               .not_valid_after(not_before + datetime.timedelta(days=days)))
    builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key.public_key()),
                                        critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(_csr.san_general_names(sans)),
                                        critical=False)
    if template_name:
        builder = builder.add_extension(x509.UnrecognizedExtension(
            ObjectIdentifier(_x509.OID_ENROLL_CERTTYPE), _csr.template_name_extension_value(template_name)),
            critical=False)
    if template_oid:
        builder = builder.add_extension(x509.UnrecognizedExtension(
            ObjectIdentifier(_x509.OID_CERTIFICATE_TEMPLATE),
            _csr.template_oid_extension_value(template_oid, 100, 4)), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class Pki(object):
    def __init__(self):
        self.root_key = rsa_key('root')
        self.root = make_cert('LAB Root CA', self.root_key, ca=True, serial=1, days=3650,
                              not_before=NOW - datetime.timedelta(days=100))
        self.ca_key = ec_key('ca')
        self.ca = make_cert('LAB-CA', self.ca_key, issuer=self.root, issuer_key=self.root_key, ca=True, serial=2,
                            days=1800, not_before=NOW - datetime.timedelta(days=50))
        self.leaf_key = rsa_key('leaf')
        self.leaf = self.issue('host.lab.adcs.test', self.leaf_key)

    def issue(self, cn, key, **kwargs):
        kwargs.setdefault('serial', 0x1234ABCD)
        return make_cert(cn, key, issuer=self.ca, issuer_key=self.ca_key, **kwargs)


_PKI = []


def pki():
    if not _PKI:
        _PKI.append(Pki())
    return _PKI[0]


def machine_leaf(pki, **kw):
    """A leaf from the Machine template with DNS, UPN and IP names (keyword arguments override)."""
    kw.setdefault('sans', ['DNS:host.lab.adcs.test', 'UPN:host$@LAB.ADCS.TEST', 'IP:127.0.0.5'])
    kw.setdefault('template_name', 'Machine')
    kw.setdefault('template_oid', '1.3.6.1.4.1.311.21.8.1.2')
    return pki.issue(kw.pop('cn', 'host.lab.adcs.test'), kw.pop('key', pki.leaf_key), **kw)
