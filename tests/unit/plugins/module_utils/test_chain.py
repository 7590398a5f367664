# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate chains (_chain): building and verifying the path to a trust anchor."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _chain
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import CertificateError
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki
from ansible_collections.adcs.enrollment.tests.unit.plugins.support.wcce_pki import NOW, machine_leaf as _leaf


# ---------------------------------------------------------------- chains
def test_verify_chain_ok(pki):
    path = _chain.verify_chain(pki.leaf, [pki.ca, pki.root], now=NOW)
    assert path == [pki.leaf, pki.ca, pki.root]
    assert _chain.verify_chain(pki.leaf, [pki.root, pki.ca], trust_anchors=[pki.root], now=NOW)[-1] == pki.root
    # an intermediate can be the anchor
    assert _chain.verify_chain(pki.leaf, [], trust_anchors=[pki.ca], now=NOW) == [pki.leaf, pki.ca]


def test_verify_chain_bad_signature(pki):
    # same issuer name and AKI, but signed by a different key
    rogue_key = wcce_pki.ec_key('rogue')
    forged = wcce_pki.make_cert('host.lab.adcs.test', pki.leaf_key, issuer=pki.ca, issuer_key=rogue_key, ski=False)
    with pytest.raises(CertificateError, match='does not verify'):
        _chain.verify_chain(forged, [pki.ca, pki.root], now=NOW)


def test_verify_chain_missing_issuer(pki):
    with pytest.raises(CertificateError, match='not among the CA certificates'):
        _chain.verify_chain(pki.leaf, [pki.root], now=NOW)


def test_verify_chain_untrusted_root(pki):
    other_root = wcce_pki.make_cert('Other Root', wcce_pki.rsa_key('other'), ca=True, serial=5)
    with pytest.raises(CertificateError, match='not a trusted CA'):
        _chain.verify_chain(pki.leaf, [pki.ca, pki.root], trust_anchors=[other_root], now=NOW)


def test_verify_chain_aki_mismatch_is_skipped(pki):
    # a CA with the same name but another key: rejected by AKI/SKI, the right one is found
    impostor = wcce_pki.make_cert('LAB-CA', wcce_pki.ec_key('imp'), issuer=pki.root, issuer_key=pki.root_key,
                                  ca=True, serial=3)
    assert _chain.verify_chain(pki.leaf, [impostor, pki.ca, pki.root], now=NOW) == [pki.leaf, pki.ca, pki.root]


def test_verify_chain_expired(pki):
    with pytest.raises(CertificateError, match='not valid at'):
        _chain.verify_chain(pki.leaf, [pki.ca, pki.root], now=NOW + datetime.timedelta(days=400))
    assert _chain.verify_chain(pki.leaf, [pki.ca, pki.root], now=NOW + datetime.timedelta(days=400),
                               check_validity=False)


def test_order_chain(pki):
    assert _chain.order_chain(pki.leaf, [pki.root, pki.leaf, pki.ca]) == [pki.ca, pki.root]
    assert _chain.order_chain(pki.leaf, [pki.root]) == []
