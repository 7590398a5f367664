# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""_trust_store: sorting CA certificates for an OS trust store (roots, issuing CAs, refused ones)."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils import _anchors, _trust_store

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.anchors import leaf, rogue_pki


# ------------------------------------------------------------------------------------------------------------
# classify (trust stores)
# ------------------------------------------------------------------------------------------------------------
def test_classify_roots_intermediates_and_refused():
    pki = wcce_pki.pki()
    rogue_root = rogue_pki()[0]
    out = _trust_store.classify([pki.root, pki.ca, leaf(), pki.root])
    assert out['roots'] == [pki.root] and out['intermediates'] == [pki.ca]
    assert list(out['refused']) == [
        (leaf(), 'not a CA certificate (basicConstraints CA:TRUE is missing)')]
    trust = _anchors.TrustAnchors([pki.root], [pki.ca], sources=['ca_bundle x'])
    out = _trust_store.classify([pki.root, pki.ca, rogue_root, rogue_pki()[1]], anchors=trust)
    assert out['roots'] == [pki.root] and out['intermediates'] == [pki.ca]
    assert [r for _c, r in out['refused']] == [
        'not among the independently verified anchors (ca_bundle x)',
        'does not chain to the independently verified anchors (ca_bundle x)']


def test_every_certificate_of_a_renewed_ca_is_installed_with_its_index():
    """A renewed CA has several current certificates (one name): each one gets its own file and says its
    certificate and key index, so the store holds them all (certificates issued before and after the renewal
    keep chaining)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from ansible_collections.adcs.enrollment.tests.unit.plugins.support.crl_pki import ca_version_ext

    pki = wcce_pki.pki()
    renewed = (x509.CertificateBuilder().subject_name(pki.ca.subject).issuer_name(pki.root.subject)
               .public_key(wcce_pki.ec_key('renewed-ca').public_key()).serial_number(51)
               .not_valid_before(pki.ca.not_valid_before_utc).not_valid_after(pki.ca.not_valid_after_utc)
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(ca_version_ext(1, 1), critical=False)
               .sign(pki.root_key, hashes.SHA256()))
    pem = b''.join(c.public_bytes(serialization.Encoding.PEM) for c in (pki.root, pki.ca, renewed)).decode()
    out = _trust_store.trust_store_selection(certificates=[{'name': 'lab', 'content': pem}])
    assert [(c['subject'], c['ca_cert_index'], c['ca_key_index']) for c in out['intermediates']] == [
        ('CN=LAB-CA', None, None), ('CN=LAB-CA', 1, 1)]
    assert len(set(c['file'] for c in out['intermediates'])) == 2
    assert [c['subject'] for c in out['roots']] == ['CN=LAB Root CA']
