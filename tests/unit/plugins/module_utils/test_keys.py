# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private keys (_keys): generation, validation, loading and serialisation."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from ansible_collections.adcs.enrollment.plugins.module_utils import _keys
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput
from ansible_collections.adcs.enrollment.tests.unit.plugins.support import wcce_pki


# ---------------------------------------------------------------- keys
def test_generate_rsa_and_ec():
    key = _keys.generate_private_key('rsa', 2048)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    for curve, name in (('P-256', 'secp256r1'), ('secp384r1', 'secp384r1'), ('p-521', 'secp521r1')):
        key = _keys.generate_private_key('ecdsa', curve=curve)
        assert key.curve.name == name


@pytest.mark.parametrize('size', [1024, 2047, 8200, 'abc'])
def test_rsa_size_rejected(size):
    with pytest.raises(InvalidInput):
        _keys.generate_private_key('rsa', size)


def test_bad_key_type_and_curve():
    with pytest.raises(InvalidInput):
        _keys.generate_private_key('dsa')
    with pytest.raises(InvalidInput):
        _keys.generate_private_key('ecdsa', curve='secp192r1')


def test_validate_private_key():
    rkey = wcce_pki.rsa_key()
    ekey = wcce_pki.ec_key()
    assert _keys.validate_private_key(rkey, 'rsa', 2048) is None
    assert 'wanted' in _keys.validate_private_key(rkey, 'rsa', 4096)
    assert 'ecdsa is wanted' in _keys.validate_private_key(rkey, 'ecdsa')
    assert 'template minimum' in _keys.validate_private_key(rkey, min_size=3072)
    assert _keys.validate_private_key(ekey, 'ecdsa', curve='P-256') is None
    assert 'secp384r1' in _keys.validate_private_key(ekey, 'ecdsa', curve='secp384r1') or \
        'P-384' in _keys.validate_private_key(ekey, 'ecdsa', curve='P-384')


def test_load_and_serialize_key_roundtrip():
    key = wcce_pki.ec_key()
    pem = _keys.private_key_bytes(key, 'pem', passphrase='s3cret')
    assert b'ENCRYPTED' in pem
    loaded = _keys.load_private_key(pem, 's3cret')
    assert _keys.public_key_der(loaded.public_key()) == _keys.public_key_der(key.public_key())
    with pytest.raises(InvalidInput):
        _keys.load_private_key(pem, 'wrong')
    der = _keys.private_key_bytes(key, 'der')
    assert _keys.public_key_der(_keys.load_private_key(der).public_key()) == _keys.public_key_der(key.public_key())
