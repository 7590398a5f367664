# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate chains: one job, building and verifying the path from a certificate to a trust anchor.

Issuers are found by name and AKI/SKI, each link's signature is verified (RSA PKCS#1 v1.5/PSS, ECDSA), validity
is checked at ``now``, and the path must end in a trust anchor whose self-signature verifies (``verify_chain``);
``order_chain`` puts CA certificates in issuing order. A renewed CA has several certificates with one name (and,
after a same-key renewal, one key): among the issuers that verify, the one valid at ``now`` that expires last wins
(``rank_issuers``), so a certificate chains to the current CA certificate.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime

from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError
from ansible_collections.adcs.enrollment.plugins.module_utils._x509 import (
    cert_der, not_after, not_before, require_crypto,
)

if HAS_CRYPTOGRAPHY:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import ExtensionOID

_UTC = datetime.timezone.utc


def _ski(cert):
    try:
        return cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value.digest
    except x509.ExtensionNotFound:
        return None


def _aki(cert):
    try:
        return cert.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value.key_identifier
    except x509.ExtensionNotFound:
        return None


def is_self_issued(cert):
    return cert.issuer == cert.subject


def signature_valid(cert, issuer):
    """Verify cert's signature with issuer's public key (RSA PKCS#1 v1.5/PSS, ECDSA)."""
    if hasattr(cert, 'verify_directly_issued_by'):
        try:
            cert.verify_directly_issued_by(issuer)
            return True
        except (ValueError, TypeError, InvalidSignature):
            return False
    pub = issuer.public_key()
    try:
        if isinstance(pub, rsa.RSAPublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(),
                       cert.signature_hash_algorithm)
        elif isinstance(pub, ec.EllipticCurvePublicKey):
            pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return False
    except InvalidSignature:
        return False
    return cert.issuer == issuer.subject


def is_issuer_candidate(cert, candidate):
    if cert.issuer != candidate.subject:
        return False
    aki, ski = _aki(cert), _ski(candidate)
    if aki is not None and ski is not None and aki != ski:
        return False
    return True


def rank_issuers(candidates, now):
    """Issuer candidates best first: valid at ``now`` before not (yet) valid, then the one that expires last."""
    def key(cert):
        return (not_before(cert) <= now <= not_after(cert), not_after(cert))
    return sorted(candidates, key=key, reverse=True)


def verify_chain(leaf, ca_certs, trust_anchors=None, now=None, check_validity=True):
    """Build and verify the path leaf -> ... -> anchor.

    ``ca_certs``: intermediates and roots (for example the chain returned by the CA). ``trust_anchors``: the
    certificates the path must end in (default: any self-signed certificate among ``ca_certs``). Returns the path
    (list, leaf first). Raises CertificateError naming what failed.
    """
    require_crypto()
    now = now or datetime.datetime.now(_UTC)
    pool = list(ca_certs or [])
    anchors = list(trust_anchors) if trust_anchors is not None else [c for c in pool if is_self_issued(c)]
    anchor_ders = set(cert_der(a) for a in anchors)
    pool_all = pool + [a for a in anchors if cert_der(a) not in set(cert_der(c) for c in pool)]
    path = [leaf]
    current = leaf
    for _depth in range(10):
        if check_validity and not (not_before(current) <= now <= not_after(current)):
            raise CertificateError('Certificate "%s" is not valid at %s (valid %s to %s)' % (
                current.subject.rfc4514_string(), now.strftime('%Y-%m-%d %H:%M:%SZ'),
                not_before(current).strftime('%Y-%m-%d %H:%M:%SZ'),
                not_after(current).strftime('%Y-%m-%d %H:%M:%SZ')))
        if cert_der(current) in anchor_ders:
            if is_self_issued(current) and not signature_valid(current, current):
                raise CertificateError('The self-signature of trust anchor "%s" does not verify'
                                       % current.subject.rfc4514_string())
            return path
        candidates = rank_issuers([c for c in pool_all if is_issuer_candidate(current, c)
                                   and cert_der(c) != cert_der(current)], now)
        issuer = None
        for cand in candidates:
            if signature_valid(current, cand):
                issuer = cand
                break
        if issuer is None:
            if candidates:
                raise CertificateError('The signature of "%s" does not verify with the key of its issuer "%s"'
                                       % (current.subject.rfc4514_string(), current.issuer.rfc4514_string()))
            if is_self_issued(current):
                raise CertificateError('The chain ends in "%s", which is not a trusted CA certificate'
                                       % current.subject.rfc4514_string())
            raise CertificateError('The issuer "%s" of "%s" is not among the CA certificates'
                                   % (current.issuer.rfc4514_string(), current.subject.rfc4514_string()))
        path.append(issuer)
        current = issuer
    raise CertificateError('The certificate chain is too long (more than 10 certificates)')


def order_chain(leaf, certs, now=None):
    """Return the CA certificates in issuing order from leaf's issuer up (unrelated ones are dropped). Of several
    certificates of one CA (renewals), the one whose signature verifies, valid at ``now`` and expiring last."""
    now = now or datetime.datetime.now(_UTC)
    out, current, pool = [], leaf, [c for c in certs if cert_der(c) != cert_der(leaf)]
    while True:
        found = [c for c in pool if is_issuer_candidate(current, c) and cert_der(c) not in [cert_der(o) for o in out]]
        verified = [c for c in found if signature_valid(current, c)]
        ranked = rank_issuers(verified or found, now)
        nxt = ranked[0] if ranked else None
        if nxt is None or cert_der(nxt) == cert_der(current):
            return out
        out.append(nxt)
        if is_self_issued(nxt):
            return out
        current = nxt
