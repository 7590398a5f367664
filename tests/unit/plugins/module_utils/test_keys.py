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


# ---------------------------------------------------------------- the key a template asks for
def rule(algorithm=None, minimum=2048, hash_name=None, template='T'):
    key_type, curve = {'RSA': ('rsa', None), 'ECDSA_P256': ('ecdsa', 'secp256r1'),
                       'ECDSA_P384': ('ecdsa', 'secp384r1')}.get(algorithm, (None, None))
    return {'template': template, 'provider': 'cng' if algorithm else 'legacy', 'algorithm': algorithm,
            'key_type': key_type, 'curve': curve, 'minimum_size': minimum, 'hash_algorithm': hash_name}


ECC = rule('ECDSA_P256', 256, 'sha256', 'WebServerECC')
ECC384 = rule('ECDSA_P384', 384, 'sha384', 'WebServerECC384')
KSP = rule('RSA', 3072, 'sha256', 'WebServerKSP')
LEGACY4096 = rule(None, 4096, None, 'WebServer4096')


@pytest.mark.parametrize('template_rule,options,expected', [
    (None, {}, dict(key_type='rsa', key_size=2048, curve='secp256r1', hash_name=None)),
    (None, {'curve': 'secp384r1'}, dict(key_type='ecdsa', key_size=2048, curve='secp384r1', hash_name=None)),
    (ECC, {}, dict(key_type='ecdsa', key_size=None, curve='secp256r1', hash_name='sha256')),
    (ECC, {'key_type': 'ecdsa'}, dict(key_type='ecdsa', key_size=None, curve='secp256r1', hash_name='sha256')),
    (ECC384, {}, dict(key_type='ecdsa', key_size=None, curve='secp384r1', hash_name='sha384')),
    (KSP, {}, dict(key_type='rsa', key_size=3072, curve=None, hash_name='sha256')),
    (KSP, {'key_size': 4096}, dict(key_type='rsa', key_size=4096, curve=None, hash_name='sha256')),
    (LEGACY4096, {}, dict(key_type='rsa', key_size=4096, curve=None, hash_name=None)),
    (rule(None, 1024), {}, dict(key_type='rsa', key_size=2048, curve=None, hash_name=None)),
    (rule('RSA', 2048, 'sha1'), {}, dict(key_type='rsa', key_size=2048, curve=None, hash_name=None)),
])
def test_template_key_params_defaults(template_rule, options, expected):
    assert _keys.template_key_params(template_rule, **options) == expected


@pytest.mark.parametrize('template_rule,options,message', [
    (ECC, {'key_type': 'rsa'}, 'template WebServerECC requires an ECDSA P-256 key (msPKI-Asymmetric-Algorithm '
                               'ECDSA_P256); key_type rsa was given'),
    (ECC, {'key_size': 2048}, 'template WebServerECC requires an ECDSA P-256 key (msPKI-Asymmetric-Algorithm '
                              'ECDSA_P256); key_size 2048 was given'),
    (ECC, {'curve': 'secp384r1'}, 'template WebServerECC requires an ECDSA P-256 key (msPKI-Asymmetric-Algorithm '
                                  'ECDSA_P256); curve secp384r1 was given'),
    (ECC384, {'key_type': 'ecdsa', 'curve': 'secp256r1'},
     'template WebServerECC384 requires an ECDSA P-384 key (msPKI-Asymmetric-Algorithm ECDSA_P384); '
     'key_type ecdsa, curve secp256r1 were given'),
    (KSP, {'key_type': 'ecdsa'}, 'template WebServerKSP requires an RSA key of at least 3072 bits '
                                 '(msPKI-Asymmetric-Algorithm RSA, msPKI-Minimal-Key-Size 3072); key_type ecdsa was '
                                 'given'),
    (KSP, {'key_size': 2048}, 'template WebServerKSP requires an RSA key of at least 3072 bits '
                              '(msPKI-Asymmetric-Algorithm RSA, msPKI-Minimal-Key-Size 3072); key_size 2048 was given'),
    (LEGACY4096, {'key_type': 'ecdsa'},
     'template WebServer4096 requires a key of at least 4096 bits (msPKI-Minimal-Key-Size 4096; a legacy CSP '
     'template compares the bit length of any key, so an ECDSA key is refused); key_type ecdsa was given'),
    (rule(None, 2048, template='WebServer'), {'curve': 'secp521r1'},
     'template WebServer requires a key of at least 2048 bits (msPKI-Minimal-Key-Size 2048; a legacy CSP template '
     'compares the bit length of any key, so an ECDSA key is refused); curve secp521r1 was given'),
    (rule('DH', 2048, template='Exchange'), {},
     'template Exchange requires a Diffie-Hellman key (msPKI-Asymmetric-Algorithm DH); this collection generates '
     'RSA and ECDSA keys only'),
])
def test_template_key_params_refuses_what_the_template_refuses(template_rule, options, message):
    with pytest.raises(InvalidInput) as info:
        _keys.template_key_params(template_rule, **options)
    assert info.value.summary == message
    assert 'Leave key_type, key_size and curve out' in info.value.to_message()


def test_template_key_problem_for_existing_keys():
    p256 = _keys.generate_private_key('ecdsa', curve='secp256r1')
    p384 = _keys.generate_private_key('ecdsa', curve='secp384r1')
    rsa2048 = wcce_pki.rsa_key('tkp-2048')
    assert _keys.template_key_problem(None, p256) is None
    assert _keys.template_key_problem(ECC, p256) is None and _keys.template_key_problem(ECC, p256.public_key()) is None
    assert _keys.template_key_problem(ECC384, p384) is None
    assert _keys.template_key_problem(ECC, rsa2048) == (
        'template WebServerECC requires an ECDSA P-256 key (msPKI-Asymmetric-Algorithm ECDSA_P256); the key is an RSA '
        'key of 2048 bits')
    assert _keys.template_key_problem(ECC, p384) == (
        'template WebServerECC requires an ECDSA P-256 key (msPKI-Asymmetric-Algorithm ECDSA_P256); the key is an '
        'ECDSA key on secp384r1')
    assert 'requires an RSA key of at least 3072 bits' in _keys.template_key_problem(KSP, rsa2048)
    assert _keys.template_key_problem(rule(None, 2048), rsa2048) is None
    assert 'the key is an ECDSA key on secp256r1' in _keys.template_key_problem(rule(None, 2048), p256)


def test_template_hash():
    assert _keys.template_hash(None) is None
    assert _keys.template_hash(ECC384) == 'sha384'
    assert _keys.template_hash(rule('RSA', 2048, 'md5')) is None


def test_template_whose_minimum_exceeds_its_curve():
    with pytest.raises(InvalidInput) as info:
        _keys.template_key_params(rule('ECDSA_P256', 384, template='Odd'))
    assert info.value.summary == ('template Odd requires an ECDSA P-256 key (msPKI-Asymmetric-Algorithm ECDSA_P256); '
                                  'its msPKI-Minimal-Key-Size 384 is larger than the curve (256 bits)')
