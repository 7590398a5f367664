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
