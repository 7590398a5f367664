"""The lab CA's own signing certificates and keys by index (the Signing_Cert table of MS-WCCE 3.2.1.1.2), and CA
renewal with the same key or a new key, numbered as AD CS numbers them.

AD CS ("Certification Authority Renewal", Win32 docs): every renewal adds a CA certificate with the next certificate
index (0, 1, 2, ...); a renewal with a new key gives the key (and its CRL) the index of the certificate it came with,
a same-key renewal keeps the previous key index (new key at 1 -> key 1; same key at 2 -> key 1; new key at 4 -> key
4). Files are suffixed ``(n)`` (certificate: certificate index, CRL and key: key index; index 0 has no suffix). A
renewed CA certificate carries the CA Version extension (1.3.6.1.4.1.311.21.1: key index << 16 | certificate index)
and the previous CA certificate hash (1.3.6.1.4.1.311.21.2, SHA-1 of the previous CA certificate). No cross
certificates: they apply to root CAs only (ICertAdmin2::GetCAProperty, CR_PROP_CAFORWARDCROSSCERT) and LAB-CA is
a subordinate CA.

The table is ``<state>/ca/signing-certs.json``; index 0 is always the PKI's ``lab-ca.pem``/``lab-ca.key``.
"""

import datetime
import hashlib
import json
import os
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pyasn1.codec.der import encoder as der_encoder
from pyasn1.type import univ

from .. import pki as lab_pki
from . import extensions as ext

OID_PREVIOUS_CA_CERT_HASH = "1.3.6.1.4.1.311.21.2"  # szOID_CERTSRV_PREVIOUS_CERT_HASH

# CA_DISP_* values of CR_PROP_CACERTSTATE / CR_PROP_CRLSTATE (MS-WCCE 3.2.1.4.3.2.19 and .20)
CA_DISP_ERROR = 0x01
CA_DISP_REVOKED = 0x02
CA_DISP_VALID = 0x03
CA_DISP_INVALID = 0x04

TABLE = "signing-certs.json"


@dataclass
class SigningCert:
    cert_index: int
    key_index: int
    cert: x509.Certificate
    key: object

    @property
    def version(self):
        """CR_PROP_CACERTVERSION / the CA Version extension: key index in the high word, certificate index low."""
        return (self.key_index << 16) | self.cert_index


def suffix(index):
    """AD CS file and object name suffix of an index: "" for 0, else "(n)"."""
    return "(%d)" % index if index else ""


def ca_version(cert):
    """(cert index, key index) from a CA certificate's CA Version extension; (0, 0) without one."""
    for extension in cert.extensions:
        if extension.oid.dotted_string == ext.OID_CA_VERSION:
            from pyasn1.codec.der import decoder as der_decoder
            value = int(der_decoder.decode(extension.value.value, asn1Spec=univ.Integer())[0])
            return value & 0xFFFF, value >> 16
    return 0, 0


class CAStore:
    """The signing certificates of one CA (oldest first; the last is the current one, MS-CSRA 3.1.1.11)."""

    def __init__(self, state_dir, pki):
        self.directory = os.path.join(os.path.abspath(state_dir), "ca")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.pki = pki
        self.path = os.path.join(self.directory, TABLE)
        self.entries = self._load()

    def _load(self):
        rows = [{"cert_index": 0, "key_index": 0, "cert": self.pki.ca_cert_path, "key": self.pki.ca_key_path}]
        if os.path.exists(self.path):
            with open(self.path, "r", encoding="utf-8") as handle:
                rows += [row for row in json.load(handle) if row["cert_index"] > 0]
        entries = []
        for row in rows:
            cert = lab_pki._load_cert(self._path(row["cert"]))
            key = lab_pki._load_key(self._path(row["key"]))
            entries.append(SigningCert(row["cert_index"], row["key_index"], cert, key))
        return entries

    def _path(self, name):
        return name if os.path.isabs(name) else os.path.join(self.directory, name)

    def _save(self):
        rows = [{"cert_index": e.cert_index, "key_index": e.key_index,
                 "cert": "lab-ca%s.pem" % suffix(e.cert_index),
                 "key": "lab-ca%s.key" % suffix(e.key_index) if e.key_index else self.pki.ca_key_path}
                for e in self.entries if e.cert_index > 0]
        with open(self.path + ".tmp", "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)
        os.replace(self.path + ".tmp", self.path)

    @property
    def current(self):
        return self.entries[-1]

    @property
    def count(self):
        return len(self.entries)

    def by_index(self, index):
        """The signing certificate of a certificate index; -1 / 0xFFFFFFFF = the current one; else None."""
        if index in (-1, 0xFFFFFFFF):
            return self.current
        return self.entries[index] if 0 <= index < len(self.entries) else None

    def key_indexes(self):
        """The key indexes (CRL_Name_Id values), oldest first."""
        return sorted({e.key_index for e in self.entries})

    def for_key(self, key_index):
        """The newest signing certificate of a key (it signs that key's CRLs), or None."""
        found = [e for e in self.entries if e.key_index == key_index]
        return found[-1] if found else None

    def issuer_of(self, cert):
        """The signing certificate whose key signed ``cert`` (newest first), or None."""
        for entry in reversed(self.entries):
            if cert.issuer != entry.cert.subject:
                continue
            try:
                cert.verify_directly_issued_by(entry.cert)
                return entry
            except Exception:  # noqa: BLE001 - InvalidSignature, ValueError, TypeError: not this key
                continue
        return None

    def cert_states(self, now):
        """CR_PROP_CACERTSTATE (3.2.1.4.3.2.19): one byte per CA certificate, valid or expired (invalid)."""
        return bytes(CA_DISP_VALID if e.cert.not_valid_after_utc > now else CA_DISP_INVALID for e in self.entries)

    def crl_states(self, now):
        """CR_PROP_CRLSTATE (3.2.1.4.3.2.20): one byte per CA certificate: valid when the certificate index is its key
        index (the certificate a key came with, whose CRL_Name_Id names that key's CRLs), error for a same-key
        renewal certificate, invalid once the certificate expired."""
        out = []
        for entry in self.entries:
            if entry.cert.not_valid_after_utc <= now:
                out.append(CA_DISP_INVALID)
            else:
                out.append(CA_DISP_VALID if entry.cert_index == entry.key_index else CA_DISP_ERROR)
        return bytes(out)

    def renew(self, new_key=False, days=3650, key_size=3072):
        """Renew the CA certificate (issued by the lab root, as the parent CA would): returns the new SigningCert."""
        previous = self.current
        cert_index = previous.cert_index + 1
        if new_key:
            key, key_index = rsa.generate_private_key(public_exponent=65537, key_size=key_size), cert_index
            lab_pki._write_key(os.path.join(self.directory, "lab-ca%s.key" % suffix(key_index)), key)
        else:
            key, key_index = previous.key, previous.key_index
        root_cert, root_key = self.pki.root_cert, self.pki.root_key
        now = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=5)
        not_after = min(now + datetime.timedelta(days=days), root_cert.not_valid_after_utc)
        public_key = key.public_key()
        previous_hash = hashlib.sha1(previous.cert.public_bytes(serialization.Encoding.DER)).digest()  # noqa: S324
        cert = (x509.CertificateBuilder()
                .subject_name(previous.cert.subject)
                .issuer_name(root_cert.subject)
                .public_key(public_key)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now)
                .not_valid_after(not_after)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False, decipher_only=False), critical=False)
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(root_cert.public_key()),
                               critical=False)
                .add_extension(ext.ca_version_ext(cert_index, key_index), critical=False)
                .add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(OID_PREVIOUS_CA_CERT_HASH),
                                                          der_encoder.encode(univ.OctetString(previous_hash))),
                               critical=False)
                .sign(root_key, hashes.SHA256()))
        lab_pki._write_cert(os.path.join(self.directory, "lab-ca%s.pem" % suffix(cert_index)), cert)
        entry = SigningCert(cert_index, key_index, cert, key)
        self.entries.append(entry)
        self._save()
        return entry


def dspublish_targets(directory, ca_name):
    """The directory objects ``certutil -dspublish`` updates for an enterprise CA certificate: the enrollment
    service (cACertificate the clients read), the AIA object and NTAuthCertificates (both keep every CA
    certificate, old and new)."""
    from ldap3.utils.dn import escape_rdn

    pks = directory.config.pks_dn
    return ["CN=%s,CN=Enrollment Services,%s" % (escape_rdn(ca_name), pks),
            "CN=%s,CN=AIA,%s" % (escape_rdn(ca_name), pks),
            "CN=NTAuthCertificates,%s" % pks]


def _update_targets(directory, ca_name, certs, add):
    """Add (``add``) or remove the DER values of ``certs`` in the cACertificate of each dspublish target that exists;
    returns {dn: number of values changed}."""
    from ldap3 import BASE, MODIFY_ADD, MODIFY_DELETE

    from .directory import DirectoryError

    ders = [c.public_bytes(serialization.Encoding.DER) for c in certs]
    changed = {}

    def run(conn):
        for dn in dspublish_targets(directory, ca_name):
            if not conn.search(dn, "(objectClass=*)", search_scope=BASE, attributes=["cACertificate"]):
                continue
            present = set(bytes(v) for v in (conn.response[0].get("raw_attributes") or {}).get("cACertificate", []))
            values = [der for der in ders if (der not in present) == add]
            if values and not conn.modify(dn, {"cACertificate": [(MODIFY_ADD if add else MODIFY_DELETE, values)]}):
                raise DirectoryError("cannot update the CA certificates of %s: %s"
                                     % (dn, conn.result.get("description")))
            changed[dn] = len(values)
        return changed

    return directory._call(run)


def dspublish(directory, ca_name, certs):
    """Add the CA certificates ``certs`` (DER values missing there) to the cACertificate of each dspublish target
    (objects that do not exist are skipped). Returns {dn: number of values added}."""
    return _update_targets(directory, ca_name, certs, True)


def dsunpublish(directory, ca_name, certs):
    """Remove the CA certificates ``certs`` from the dspublish targets (for tests that must leave a shared
    directory as they found it). Returns {dn: number of values removed}."""
    return _update_targets(directory, ca_name, certs, False)
