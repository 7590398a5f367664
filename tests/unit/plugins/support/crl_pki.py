# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A throwaway CA for the CRL unit tests: CA certificates, leaf certificates with CDP/freshest CRL/AIA, and
base/delta CRLs built with cryptography (no lab)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID

NOW = datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=datetime.timezone.utc)
_KEYS = {}


def key(name='ca'):
    if name not in _KEYS:
        _KEYS[name] = ec.generate_private_key(ec.SECP256R1())
    return _KEYS[name]


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.DOMAIN_COMPONENT, 'test'),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Ca(object):
    def __init__(self, cn='TEST-CA', key_name='ca', crl_sign=True):
        self.key = key(key_name)
        self.name = name(cn)
        builder = (x509.CertificateBuilder().subject_name(self.name).issuer_name(self.name)
                   .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(NOW - datetime.timedelta(days=30))
                   .not_valid_after(NOW + datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                                key_encipherment=False, data_encipherment=False,
                                                key_agreement=False, key_cert_sign=True, crl_sign=crl_sign,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                                  critical=False))
        self.cert = builder.sign(self.key, hashes.SHA256())

    @property
    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self):
        return self.cert.public_bytes(serialization.Encoding.DER)

    def aki(self):
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key())

    def leaf(self, cn='host.test', serial=None, cdp=(), freshest=(), aia=()):
        leaf_key = key('leaf')
        builder = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(self.name)
                   .public_key(leaf_key.public_key()).serial_number(serial or x509.random_serial_number())
                   .not_valid_before(NOW - datetime.timedelta(days=1))
                   .not_valid_after(NOW + datetime.timedelta(days=365))
                   .add_extension(self.aki(), critical=False))
        if cdp:
            builder = builder.add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(u) for u in cdp], relative_name=None, reasons=None,
                crl_issuer=None)]), critical=False)
        if freshest:
            builder = builder.add_extension(x509.FreshestCRL([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(u) for u in freshest], relative_name=None, reasons=None,
                crl_issuer=None)]), critical=False)
        if aia:
            builder = builder.add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u))
                for u in aia]), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def crl(self, number=1, revoked=(), this_update=None, next_update=None, delta_of=None, freshest=(),
            extra=(), signer=None, issuer=None, aki=True):
        """revoked: (serial, reason or None, date or None) tuples; delta_of: base CRL number for a delta CRL."""
        this_update = this_update or NOW - datetime.timedelta(hours=1)
        next_update = next_update or NOW + datetime.timedelta(days=7)
        builder = (x509.CertificateRevocationListBuilder().issuer_name(issuer or self.name)
                   .last_update(this_update).next_update(next_update)
                   .add_extension(x509.CRLNumber(number), critical=False))
        if aki:
            builder = builder.add_extension(self.aki(), critical=False)
        if delta_of is not None:
            builder = builder.add_extension(x509.DeltaCRLIndicator(delta_of), critical=True)
        if freshest:
            builder = builder.add_extension(x509.FreshestCRL([x509.DistributionPoint(
                full_name=[x509.UniformResourceIdentifier(u) for u in freshest], relative_name=None, reasons=None,
                crl_issuer=None)]), critical=False)
        for ext, critical in extra:
            builder = builder.add_extension(ext, critical=critical)
        for serial, reason, date in revoked:
            entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(
                date or NOW - datetime.timedelta(hours=2))
            if reason is not None:
                entry = entry.add_extension(x509.CRLReason(reason), critical=False)
            builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(signer or self.key, hashes.SHA256())


def intermediate(root, cn='SEC-SUB-CA', key_name='sec-sub', ca=True):
    """A CA (or, with ca=False, a non-CA) certificate issued by ``root``."""
    sub = Ca(cn, key_name=key_name)
    builder = (x509.CertificateBuilder().subject_name(sub.name).issuer_name(root.name)
               .public_key(sub.key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW - datetime.timedelta(days=1))
               .not_valid_after(NOW + datetime.timedelta(days=365))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(root.aki(), critical=False))
    sub.cert = builder.sign(root.key, hashes.SHA256())
    return sub


def der(crl):
    return crl.public_bytes(serialization.Encoding.DER)


def pem(crl):
    return crl.public_bytes(serialization.Encoding.PEM)


def ca_version_ext(cert_index, key_index):
    """The CA Version extension (1.3.6.1.4.1.311.21.1): DER INTEGER key index << 16 | certificate index."""
    value = (key_index << 16) | cert_index
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), 'big')
    return x509.UnrecognizedExtension(x509.ObjectIdentifier('1.3.6.1.4.1.311.21.1'), b'\x02' + bytes([len(body)]) + body)


def renewed(ca, cert_index, key_index, key_name=None, not_before=None, not_after=None):
    """A renewal of ``ca`` (same name): the same key, or the key ``key_name``; with the CA Version extension."""
    new = Ca.__new__(Ca)
    new.name = ca.name
    new.key = key(key_name) if key_name else ca.key
    builder = (x509.CertificateBuilder().subject_name(ca.name).issuer_name(ca.name)
               .public_key(new.key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(not_before or NOW - datetime.timedelta(days=1))
               .not_valid_after(not_after or NOW + datetime.timedelta(days=7300))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(new.key.public_key()), critical=False)
               .add_extension(ca_version_ext(cert_index, key_index), critical=False))
    new.cert = builder.sign(new.key, hashes.SHA256())
    return new
