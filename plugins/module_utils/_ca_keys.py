# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""CA keys: one job, telling which of a renewed CA's signing certificates (certificate index) and key (key index)
a certificate belongs to.

AD CS numbers every CA certificate (0, 1, 2, ... one per renewal) and every CA key by the certificate index it came
with (a same-key renewal keeps the key index); the CRLs of a key are named by that key index (CRL_Name_Id, MS-CSRA
3.1.1.4.1), and CR_PROP_BASECRL / CR_PROP_DELTACRL take it as PropIndex (MS-WCCE 3.2.1.4.3.2.18 and .19). The CA
Version extension (1.3.6.1.4.1.311.21.1) of a CA certificate and CR_PROP_CACERTVERSION hold key index << 16 |
certificate index.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils import _chain
from ansible_collections.adcs.enrollment.plugins.module_utils._crl_http import FetchError
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

CR_PROP_CACERTVERSION = 0x27  # MS-WCCE 3.2.1.4.3.2.39, LONG, indexed by CA certificate index (not in _ndr yet)
OID_CA_VERSION = '1.3.6.1.4.1.311.21.1'


def ca_version(cert):
    """(certificate index, key index) from a CA certificate's CA Version extension, or None without one."""
    for extension in cert.extensions:
        if extension.oid.dotted_string != OID_CA_VERSION:
            continue
        raw = getattr(extension.value, 'value', b'')
        # DER INTEGER: 0x02, length, big-endian two's complement (a DWORD: at most 5 bytes)
        if len(raw) < 3 or raw[0] != 0x02 or raw[1] != len(raw) - 2 or raw[1] > 5:
            return None
        value = int.from_bytes(raw[2:], 'big')
        return value & 0xFFFF, (value >> 16) & 0xFFFF
    return None


def _spki(cert):
    return cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _text(exc):
    return exc.to_message() if hasattr(exc, 'to_message') else str(exc)


class SigningCerts(object):
    """The signing certificates of one CA over GetCAProperty (``client.get_ca_property(prop_id, index, type)``)."""

    def __init__(self, client):
        # _ndr (impacket's NDR types) only here: ca_version() serves the directory reports without it
        from ansible_collections.adcs.enrollment.plugins.module_utils import _ndr
        self.ndr = _ndr
        self.client = client
        self._count = None
        self._certs = {}

    def count(self):
        """CR_PROP_CASIGCERTCOUNT (1 when the CA does not answer it)."""
        if self._count is None:
            try:
                self._count = max(int(self.client.get_ca_property(self.ndr.CR_PROP_CASIGCERTCOUNT, 0,
                                                                  self.ndr.PROPTYPE_LONG)), 1)
            except Exception:
                self._count = 1
        return self._count

    def der(self, index):
        """CR_PROP_CASIGCERT of a certificate index (bytes); FetchError when the CA returns none."""
        if index not in self._certs:
            try:
                value = self.client.get_ca_property(self.ndr.CR_PROP_CASIGCERT, index, self.ndr.PROPTYPE_BINARY)
            except Exception as exc:
                raise FetchError('GetCAProperty(CA signing certificate %d) failed: %s' % (index, _text(exc)))
            if not value:
                raise FetchError('the CA returned no CA signing certificate %d' % index)
            self._certs[index] = bytes(value)
        return self._certs[index]

    def certificate(self, index):
        try:
            return x509.load_der_x509_certificate(self.der(index))
        except ValueError as exc:
            raise FetchError('CA signing certificate %d is not a certificate: %s' % (index, exc))

    def key_index(self, index, cert=None):
        """The key index of a certificate index: CR_PROP_CACERTVERSION, else the certificate's CA Version extension,
        else the certificate index itself (a CA that never renewed)."""
        try:
            version = int(self.client.get_ca_property(CR_PROP_CACERTVERSION, index, self.ndr.PROPTYPE_LONG))
            return (version >> 16) & 0xFFFF
        except Exception:
            version = ca_version(cert) if cert is not None else None
            return version[1] if version else index

    def select(self, cert=None, issuer=None):
        """(certificate index, key index, CA certificate) for the CRL of ``cert``: the CA certificate whose key
        issued it (name, AKI/SKI and signature; the newest of several with one key), or the one with ``issuer``'s
        key; without either the current one (the last index). FetchError when none matches."""
        count = self.count()
        if cert is None and issuer is None:
            chosen = self.certificate(count - 1)
            return count - 1, self.key_index(count - 1, chosen), chosen
        for index in range(count - 1, -1, -1):
            candidate = self.certificate(index)
            if issuer is not None and _spki(candidate) == _spki(issuer) and candidate.subject == issuer.subject:
                return index, self.key_index(index, candidate), candidate
            if cert is not None and issuer is None and _chain.is_issuer_candidate(cert, candidate) \
                    and _chain.signature_valid(cert, candidate):
                return index, self.key_index(index, candidate), candidate
        what = 'the key of "%s"' % issuer.subject.rfc4514_string() if issuer is not None else \
            'the issuer of "%s"' % cert.subject.rfc4514_string()
        raise FetchError('none of the %d CA signing certificates of the CA has %s' % (count, what))
