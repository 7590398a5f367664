# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Trust anchors that never come from the CA session: one job, saying which CA certificates a certificate the CA
issued may chain to, from sources the CA cannot influence.

Sources (``AnchorSource``):

- ``ca_bundle``: a PEM file the user placed on the machine; its self-signed CA certificates are anchors, its other
  CA certificates known intermediates;
- ``ca_fingerprint``: SHA-256 fingerprints of acceptable CA certificates; a certificate with such a fingerprint is
  an anchor wherever it came from (even from the CA's reply: its fingerprint authenticates it). When given, it is
  the only way to be an anchor (a pin restricts the other sources);
- Active Directory read over verified TLS (``ldap_scheme`` ldaps/starttls with ``validate_certs``), when neither of
  the above pins the anchors: the roots in
  CN=Certification Authorities are anchors (what Windows puts in its Trusted Root store); the certificates of the
  enrollment services, CN=AIA and CN=NTAuthCertificates are known intermediates (never anchors). LDAP without TLS
  is not a source: ldap3 has no Kerberos/NTLM security layer, so the results would not be integrity-protected.

Certificates from GetCACert or the reply of a request only help to build the path (``TrustAnchors.verify``); the
path must end at an anchor, else the error names the root the CA offered (subject and SHA-256 fingerprint).
Sorting certificates for an OS trust store (roots, issuing CAs, refused ones) is ``_trust_store``'s job.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import binascii
import datetime
import hashlib
import re

from ansible_collections.adcs.enrollment.plugins.module_utils import _chain
from ansible_collections.adcs.enrollment.plugins.module_utils import _x509
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError, InvalidInput, WcceError
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
else:  # reported by the modules (_deps.check)
    x509 = None

PKS_RDN = 'CN=Public Key Services,CN=Services'
FINGERPRINT_RE = re.compile(r'^[0-9a-f]{64}$')

ANCHOR_REMEDY = ('Set ca_fingerprint (the SHA-256 fingerprint of the root CA certificate) or ca_bundle (a PEM file '
                 'with the root CA certificate), or read Active Directory over verified TLS (domain or '
                 'domain_controller with ldap_scheme=ldaps or starttls and validate_certs=true), where the root is '
                 'in CN=Certification Authorities.')


def fingerprint(cert):
    """Upper-case colon-separated SHA-256 of the DER certificate (as certutil and openssl -fingerprint show it)."""
    return ':'.join('%02X' % b for b in bytearray(hashlib.sha256(_x509.cert_der(cert)).digest()))


def normalize_fingerprint(text):
    """64 lower-case hex digits from ``AB:CD:...``, ``abcd...``, ``sha256:...``; InvalidInput otherwise."""
    value = str(text or '').strip().lower()
    for prefix in ('sha256:', 'sha-256:', 'sha256=', 'sha256 fingerprint='):
        if value.startswith(prefix):
            value = value[len(prefix):]
    value = re.sub(r'[\s:]', '', value)
    if not FINGERPRINT_RE.match(value):
        raise InvalidInput('ca_fingerprint %r is not a SHA-256 fingerprint (64 hexadecimal digits, colons allowed)'
                           % (text,))
    return value


def sha256_hex(cert):
    return binascii.hexlify(hashlib.sha256(_x509.cert_der(cert)).digest()).decode('ascii')


def is_ca(cert):
    """True when the certificate says it is a CA (basicConstraints CA:TRUE)."""
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def is_self_signed(cert):
    """Self-issued, and its self-signature verifies."""
    return _chain.is_self_issued(cert) and _chain.signature_valid(cert, cert)


def is_root(cert):
    """A CA certificate that is self-issued and whose self-signature verifies."""
    return is_ca(cert) and is_self_signed(cert)


def describe(cert):
    return '"%s" (SHA-256 %s)' % (cert.subject.rfc4514_string(), fingerprint(cert))


def load_bundle(path):
    """The certificates of a PEM/DER file given by the user; InvalidInput when it cannot be used."""
    try:
        with open(path, 'rb') as handle:
            data = handle.read(16 * 1024 * 1024)
    except (IOError, OSError) as exc:
        raise InvalidInput('Cannot read ca_bundle %s: %s' % (path, exc.strerror or exc))
    if not data.strip():
        raise InvalidInput('ca_bundle %s holds no certificate' % path)
    try:
        certs = _x509.load_certificates(data)
    except WcceError as exc:
        raise InvalidInput('ca_bundle %s holds no readable certificate' % path, detail=exc.summary)
    if not certs:
        raise InvalidInput('ca_bundle %s holds no certificate' % path)
    return certs


def unique(certs):
    out, seen = [], set()
    for cert in certs:
        der = _x509.cert_der(cert)
        if der not in seen:
            seen.add(der)
            out.append(cert)
    return out


def _load_values(values):
    out = []
    for value in values or []:
        try:
            out.append(x509.load_der_x509_certificate(bytes(value)))
        except ValueError:
            continue  # a damaged value in AD is skipped, not trusted
    return out


def read_directory(conn, configuration_nc=None):
    """(roots, intermediates) from AD: CA certificates of CN=Certification Authorities (anchors), of the
    enrollment services, CN=AIA and CN=NTAuthCertificates (intermediates only). ``conn`` has the
    AdConnection.search() interface."""
    nc = configuration_nc or conn.configuration_nc
    pks = '%s,%s' % (PKS_RDN, nc)
    roots, intermediates = [], []
    for entry in conn.search('CN=Certification Authorities,%s' % pks, '(objectClass=certificationAuthority)',
                             ['cACertificate'], scope='LEVEL'):
        roots.extend(_load_values(entry['attributes'].get('cACertificate')))
    for base, flt, scope in (('CN=Enrollment Services,%s' % pks, '(objectClass=pKIEnrollmentService)', 'LEVEL'),
                             ('CN=AIA,%s' % pks, '(objectClass=certificationAuthority)', 'LEVEL'),
                             ('CN=NTAuthCertificates,%s' % pks, '(objectClass=*)', 'BASE')):
        for entry in conn.search(base, flt, ['cACertificate'], scope=scope):
            intermediates.extend(_load_values(entry['attributes'].get('cACertificate')))
    roots = [c for c in unique(roots) if is_root(c)]
    intermediates = [c for c in unique(intermediates) if is_ca(c)]
    return roots, intermediates


def directory_unverified_reason(params):
    """Why an AD read with these connection options is no trust source, or None when it is (verified TLS)."""
    if not params.get('domain') and not params.get('domain_controller'):
        return 'Active Directory is not used (neither domain nor domain_controller is set)'
    scheme = params.get('ldap_scheme') or 'ldaps'
    if scheme not in ('ldaps', 'starttls'):
        return ('Active Directory is read over ldap_scheme=%s, which does not protect the results against '
                'tampering (Kerberos and NTLM authenticate only the bind here)' % scheme)
    if params.get('validate_certs') is False:
        return 'validate_certs=false: the domain controller\'s TLS certificate is not verified'
    return None


class TrustAnchors(object):
    """Anchors and known intermediates, and the path check against them."""

    def __init__(self, anchors=(), intermediates=(), fingerprints=(), sources=(), directory_roots=()):
        self.fingerprints = frozenset(fingerprints)
        self.directory_roots = unique(directory_roots)  # the anchors that CN=Certification Authorities gave
        self.anchors = unique(anchors)
        self.intermediates = unique(intermediates)
        self.sources = list(sources)
        self._paths = {}   # verified CA paths of this run: see _known_path

    def anchors_among(self, certs):
        """The anchors, plus certificates of ``certs`` that a pinned fingerprint authenticates."""
        extra = [c for c in certs if self.fingerprints and sha256_hex(c) in self.fingerprints]
        if self.fingerprints:
            found = [c for c in self.anchors if sha256_hex(c) in self.fingerprints] + extra
        else:
            found = self.anchors + extra
        return [c for c in unique(found) if is_ca(c)]

    def verify(self, cert, untrusted=(), request_id=None, now=None, check_validity=True):
        """The CA certificates of the path from ``cert`` to an anchor (issuer first, the anchor last), built from
        the known intermediates and ``untrusted`` (GetCACert, the reply). CertificateError when the path does
        not end at an anchor: it names the root the CA offered."""
        untrusted = [c for c in unique(untrusted) if _x509.cert_der(c) != _x509.cert_der(cert)]
        known = self.intermediates + untrusted
        anchors = self.anchors_among(known)
        if not anchors:
            raise CertificateError('No trust anchor to verify the issued certificate with; nothing was written',
                                   request_id=request_id, detail='%s gave no usable CA certificate'
                                   % (', '.join(self.sources) or 'no source'), remedy=ANCHOR_REMEDY)
        pool = [c for c in unique(anchors + known) if is_ca(c)]
        key = (cert.issuer.public_bytes(), frozenset(_x509.cert_der(c) for c in pool),
               frozenset(_x509.cert_der(a) for a in anchors), check_validity)
        known_path = self._known_path(key, cert, now, check_validity)
        if known_path is not None:
            return known_path
        try:
            path = _chain.verify_chain(cert, pool, trust_anchors=anchors, now=now, check_validity=check_validity)
        except CertificateError as exc:
            top = _chain.order_chain(cert, pool)
            anchor_ders = set(_x509.cert_der(a) for a in anchors)
            if top and _x509.cert_der(top[-1]) not in anchor_ders and _chain.is_self_issued(top[-1]):
                raise CertificateError(
                    'The issued certificate chains to the root CA %s, which is not a trusted anchor; nothing was '
                    'written' % describe(top[-1]), request_id=request_id,
                    detail='trusted anchors from %s: %s' % (
                        ', '.join(self.sources), ', '.join(describe(a) for a in anchors)),
                    remedy='If this root is yours, publish it in CN=Certification Authorities or pin it with '
                           'ca_bundle or ca_fingerprint; otherwise the CA or its replies are not genuine.')
            raise CertificateError('The issued certificate does not chain to a trusted CA certificate; nothing was '
                                   'written', request_id=request_id, detail=exc.summary,
                                   remedy='Check the CA certificate and its chain, and the trust anchors (%s).'
                                          % ', '.join(self.sources))
        if len(path) > 1:
            self._paths[key] = (path[1:], max(_x509.not_before(c) for c in path[1:]),
                                min(_x509.not_after(c) for c in path[1:]))
        return path[1:]

    def _known_path(self, key, cert, now, check_validity):
        """The CA path verified earlier in this run for the same issuer name, CA certificates and anchors, when
        ``cert`` extends it: signed by its first certificate (and valid at ``now``, which is inside the path's
        validity). The CA certificates' signatures up to the anchor are not checked again (a batch of one CA)."""
        known = self._paths.get(key)
        if known is None:
            return None
        ca_path, valid_from, valid_until = known
        issuer = ca_path[0]
        if _x509.cert_der(cert) in key[2] or not _chain.is_issuer_candidate(cert, issuer):
            return None
        if check_validity:
            now = now or datetime.datetime.now(datetime.timezone.utc)
            if not (valid_from <= now <= valid_until and _x509.not_before(cert) <= now <= _x509.not_after(cert)):
                return None
        if not _chain.signature_valid(cert, issuer):
            return None
        return list(ca_path)


class AnchorSource(object):
    """Reads the anchors once, lazily: ``check()`` (no network) before the CA is contacted, ``load()`` after.

    ``connect_directory``: callable returning a connected AdConnection (used only when the AD read is verified, and
    only when neither ca_bundle nor ca_fingerprint pins the anchors, unless ``directory_always``)."""

    def __init__(self, ca_bundle=None, ca_fingerprint=None, connect_directory=None, unverified_reason=None,
                 directory_always=False):
        self.ca_bundle = ca_bundle
        self.directory_always = directory_always
        self.fingerprints = [normalize_fingerprint(f) for f in (ca_fingerprint or [])]
        self.connect_directory = connect_directory if unverified_reason is None else None
        if connect_directory is None and unverified_reason is None:
            unverified_reason = directory_unverified_reason({})
        self.unverified_reason = unverified_reason
        self._loaded = None

    @classmethod
    def from_params(cls, params, connect_directory=None, directory_always=False):
        reason = directory_unverified_reason(params)
        if reason is None and connect_directory is None:
            reason = 'Active Directory is not used'
        return cls(ca_bundle=params.get('ca_bundle'), ca_fingerprint=params.get('ca_fingerprint'),
                   connect_directory=connect_directory, unverified_reason=reason, directory_always=directory_always)

    def check(self):
        """InvalidInput (before any CA contact) when no independent source is configured."""
        if self.ca_bundle or self.fingerprints or self.connect_directory is not None:
            return
        raise InvalidInput('No independent trust anchor for the certificates the CA issues: %s, and neither '
                           'ca_bundle nor ca_fingerprint is set; the CA was not contacted' % self.unverified_reason,
                           remedy=ANCHOR_REMEDY)

    def load(self):
        if self._loaded is not None:
            return self._loaded
        self.check()
        anchors, intermediates, sources, directory_roots = [], [], [], []
        if self.ca_bundle:
            certs = [c for c in load_bundle(self.ca_bundle) if is_ca(c)]
            anchors.extend(c for c in certs if is_root(c))
            intermediates.extend(c for c in certs if not is_root(c))
            sources.append('ca_bundle %s' % self.ca_bundle)
        if self.fingerprints:
            sources.append('ca_fingerprint')
        if self.connect_directory is not None and (self.directory_always or not (self.ca_bundle or self.fingerprints)):
            try:
                conn = self.connect_directory()
                roots, known = read_directory(conn)
            except WcceError:
                raise
            except Exception as exc:
                raise InvalidInput('Reading the CA certificates from Active Directory failed; the CA was not '
                                   'contacted', detail=str(exc), remedy=ANCHOR_REMEDY)
            anchors.extend(roots)
            directory_roots.extend(roots)
            intermediates.extend(known)
            sources.append('Active Directory (CN=Certification Authorities)')
        self._loaded = TrustAnchors(anchors, intermediates, self.fingerprints, sources, directory_roots)
        if not self.fingerprints and not self._loaded.anchors:
            raise InvalidInput('No trust anchor found in %s; the CA was not contacted' % ', '.join(sources),
                               remedy=ANCHOR_REMEDY)
        return self._loaded
