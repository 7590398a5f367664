# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-only PKI pieces for the anchor and trust-store tests: a rogue PKI with the unit PKI's names, a leaf, PEM
files and a directory of cACertificate values."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from cryptography.hazmat.primitives import serialization

from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki

PEM = serialization.Encoding.PEM


def rogue_pki():
    """A root + issuing CA with the same names as the unit PKI's, other keys (what an injected reply carries)."""
    root_key = wcce_pki.rsa_key('rogue-root')
    root = wcce_pki.make_cert('LAB Root CA', root_key, ca=True, serial=1, days=3650)
    ca_key = wcce_pki.ec_key('rogue-ca')
    ca = wcce_pki.make_cert('LAB-CA', ca_key, issuer=root, issuer_key=root_key, ca=True, serial=2, days=3000)
    leaf = wcce_pki.make_cert('host.lab.adcs.test', wcce_pki.rsa_key('leaf'), issuer=ca, issuer_key=ca_key)
    return root, ca, leaf


_LEAF = []


def leaf():
    if not _LEAF:
        _LEAF.append(wcce_pki.pki().issue('host.lab.adcs.test', wcce_pki.rsa_key('leaf')))
    return _LEAF[0]


def write_pem(path, *certs):
    with open(path, 'wb') as handle:
        handle.write(b''.join(c.public_bytes(PEM) for c in certs))
    return path


class FakeDirectory(object):
    """AdConnection.search() over a dict: base DN -> list of DER values of cACertificate."""
    configuration_nc = 'CN=Configuration,DC=lab'

    def __init__(self, containers):
        self.containers = containers
        self.searches = []

    def search(self, base, flt, attributes, scope='SUBTREE'):
        self.searches.append((base.split(',')[0], scope))
        return [{'dn': base, 'attributes': {'cACertificate': [v]}} for v in self.containers.get(base.split(',')[0], [])]
