# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Private keys: one job, generating, loading, validating, describing and serialising the keys we request for.

RSA 2048-8192 and ECDSA P-256/P-384/P-521; PKCS#8 (PEM or DER, optionally encrypted) on output; PEM or DER,
PKCS#1/PKCS#8/SEC1 on input.

The key a template asks for is decided here too: ``template_key_params(rule, ...)`` turns the template's key rule
(``_templates.key_rule``: msPKI-Asymmetric-Algorithm, msPKI-Minimal-Key-Size, msPKI-Hash-Algorithm) and the
options given into the parameters of the key to generate - the template's algorithm and minimum size when the
options leave them open - and refuses options the template (and so the CA) would refuse; ``template_key_problem``
says why an existing key or a CSR's key does not fit the template.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils import _deps
from ansible_collections.adcs.enrollment.plugins.module_utils._deps import HAS_CRYPTOGRAPHY
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import InvalidInput
from ansible_collections.adcs.enrollment.plugins.module_utils._template_flags import ASYMMETRIC_ALGORITHMS

if HAS_CRYPTOGRAPHY:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

FORMATS = ('pem', 'der')
RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192
CURVES = {
    'secp256r1': 'SECP256R1', 'p-256': 'SECP256R1', 'prime256v1': 'SECP256R1',
    'secp384r1': 'SECP384R1', 'p-384': 'SECP384R1',
    'secp521r1': 'SECP521R1', 'p-521': 'SECP521R1',
}
_CURVE_NAMES = {'SECP256R1': 'secp256r1', 'SECP384R1': 'secp384r1', 'SECP521R1': 'secp521r1'}


_CURVE_BITS = {'secp256r1': 256, 'secp384r1': 384, 'secp521r1': 521}
SIGNATURE_HASHES = ('sha256', 'sha384', 'sha512')


def _require_crypto():
    _deps.require('cryptography')


def normalize_curve(curve):
    name = CURVES.get(str(curve).strip().lower())
    if name is None:
        raise InvalidInput('Unsupported elliptic curve %r; use one of secp256r1 (P-256), secp384r1 (P-384), '
                           'secp521r1 (P-521)' % (curve,))
    return name


def generate_private_key(key_type='rsa', key_size=2048, curve='secp256r1'):
    """Generate a new private key (RSA of ``key_size`` bits, or ECDSA on ``curve``)."""
    _require_crypto()
    key_type = (key_type or 'rsa').lower()
    if key_type == 'rsa':
        validate_rsa_size(key_size)
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_size))
    if key_type in ('ecdsa', 'ec'):
        return ec.generate_private_key(getattr(ec, normalize_curve(curve))())
    raise InvalidInput('Unsupported key type %r; use rsa or ecdsa' % (key_type,))


def validate_rsa_size(key_size):
    try:
        size = int(key_size)
    except (TypeError, ValueError):
        raise InvalidInput('RSA key size must be an integer, got %r' % (key_size,))
    if size < RSA_MIN_BITS or size > RSA_MAX_BITS or size % 8:
        raise InvalidInput('RSA key size %s is not supported; use %d to %d bits (a multiple of 8)'
                           % (key_size, RSA_MIN_BITS, RSA_MAX_BITS))
    return size


def key_description(key):
    """Return ('rsa', bits) or ('ecdsa', curve name) for a private or public key."""
    _require_crypto()
    if isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
        return ('rsa', key.key_size)
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return ('ecdsa', key.curve.name)
    return (type(key).__name__, None)


def validate_private_key(key, key_type=None, key_size=None, curve=None, min_size=None):
    """Check an existing key against the wanted parameters. Returns None if it fits, else a reason string.

    ``min_size`` is the template's msPKI-Minimal-Key-Size (RSA bits).
    """
    _require_crypto()
    kind, detail = key_description(key)
    if kind not in ('rsa', 'ecdsa'):
        return 'key type %s is not supported (rsa or ecdsa)' % kind
    if key_type and (key_type.lower() in ('ec', 'ecdsa')) != (kind == 'ecdsa'):
        return 'key is %s but %s is wanted' % (kind, key_type.lower())
    if kind == 'rsa':
        if detail < RSA_MIN_BITS or detail > RSA_MAX_BITS:
            return 'RSA key has %d bits; %d to %d are supported' % (detail, RSA_MIN_BITS, RSA_MAX_BITS)
        if key_size and (not key_type or key_type.lower() == 'rsa') and int(key_size) != detail:
            return 'RSA key has %d bits but %s are wanted' % (detail, key_size)
        if min_size and detail < int(min_size):
            return 'RSA key has %d bits, below the template minimum of %s' % (detail, min_size)
    else:
        if detail not in _CURVE_NAMES.values():
            return 'curve %s is not supported' % detail
        if curve and key_type and key_type.lower() in ('ec', 'ecdsa') and \
                _CURVE_NAMES[normalize_curve(curve)] != detail:
            return 'key is on %s but %s is wanted' % (detail, curve)
    return None


def load_private_key(data, passphrase=None, validate=True):
    """Load a PEM or DER private key (optionally encrypted). ``validate=False`` skips the RSA consistency check
    (tens of milliseconds): only for a key that signs nothing (the no-op path compares its public key)."""
    _require_crypto()
    if isinstance(passphrase, str):
        passphrase = passphrase.encode('utf-8')
    if isinstance(data, str):
        data = data.encode('ascii')
    try:
        if data.lstrip().startswith(b'-----'):
            return serialization.load_pem_private_key(data, password=passphrase,
                                                      unsafe_skip_rsa_key_validation=not validate)
        return serialization.load_der_private_key(data, password=passphrase,
                                                  unsafe_skip_rsa_key_validation=not validate)
    except (ValueError, TypeError) as exc:
        raise InvalidInput('Cannot load the private key (wrong passphrase or not a key)', detail=str(exc))


def private_key_bytes(key, encoding='pem', passphrase=None):
    """Serialize a private key as PKCS#8 (PEM or DER), encrypted with ``passphrase`` if given."""
    _require_crypto()
    if encoding not in FORMATS:
        raise InvalidInput('Unknown format %r (pem or der)' % (encoding,))
    enc = serialization.Encoding.PEM if encoding == 'pem' else serialization.Encoding.DER
    if passphrase:
        if isinstance(passphrase, str):
            passphrase = passphrase.encode('utf-8')
        algo = serialization.BestAvailableEncryption(passphrase)
    else:
        algo = serialization.NoEncryption()
    return key.private_bytes(enc, serialization.PrivateFormat.PKCS8, algo)


def public_key_der(public_key):
    """SubjectPublicKeyInfo DER of a public key (what "the same key" compares)."""
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_info(key):
    """{'type': 'rsa', 'size': bits} or {'type': 'ecdsa', 'curve': name} for a private or public key."""
    kind, detail = key_description(key)
    if kind == 'rsa':
        return {'type': 'rsa', 'size': detail}
    return {'type': kind, 'curve': detail}


# ---------------------------------------------------------------------------------------------------------------
# The key a template asks for
# ---------------------------------------------------------------------------------------------------------------
def _requirement(rule):
    """Words naming what the template requires, with the attribute that says so."""
    algorithm = rule.get('algorithm')
    minimum = rule.get('minimum_size')
    if algorithm:
        key_type, _curve, words = ASYMMETRIC_ALGORITHMS.get(algorithm, (None, None, 'a %s key' % algorithm))
        text = '%s (msPKI-Asymmetric-Algorithm %s' % (words, algorithm)
        if key_type == 'rsa' and minimum:
            text = 'an RSA key of at least %d bits (msPKI-Asymmetric-Algorithm RSA, msPKI-Minimal-Key-Size %d' \
                   % (minimum, minimum)
        return text + ')'
    return ('a key of at least %d bits (msPKI-Minimal-Key-Size %d; a legacy CSP template compares the bit length '
            'of any key, so an ECDSA key is refused)' % (minimum, minimum))


def _given(key_type, key_size, curve):
    parts = []
    if key_type:
        parts.append('key_type %s' % key_type)
    if key_size:
        parts.append('key_size %s' % key_size)
    if curve:
        parts.append('curve %s' % curve)
    return ', '.join(parts) + (' was given' if len(parts) == 1 else ' were given')


def _refuse(rule, what):
    raise InvalidInput('template %s requires %s; %s' % (rule.get('template') or '(unnamed)', _requirement(rule),
                                                        what),
                       remedy='Leave key_type, key_size and curve out to get the key the template asks for, or pick '
                              'another template (see adcs.enrollment.wcce_template_info).')


def template_key_params(rule, key_type=None, key_size=None, curve=None):
    """dict(key_type, key_size, curve, hash_name) of the key to generate for a template whose key rule is ``rule``
    (``_templates.key_rule``; None: no template known - RSA 2048, or ECDSA on ``curve``). Options given win when
    the template accepts them; InvalidInput names the template's requirement when it would not."""
    given = _given(key_type, key_size, curve) if (key_type or key_size or curve) else None
    if key_type is None and curve:
        key_type = 'ecdsa'
    if key_type is None and key_size:
        key_type = 'rsa'
    params = dict(hash_name=template_hash(rule))
    if not rule:
        params.update(key_type=key_type or 'rsa', key_size=key_size or RSA_MIN_BITS, curve=curve or 'secp256r1')
        return params
    minimum = rule.get('minimum_size') or 0
    wanted_type, wanted_curve = rule.get('key_type'), rule.get('curve')
    if rule.get('algorithm') and wanted_type is None:
        _refuse(rule, 'this collection generates RSA and ECDSA keys only')
    if wanted_type and key_type and key_type != wanted_type:
        _refuse(rule, given)
    if wanted_curve and curve and _CURVE_NAMES[normalize_curve(curve)] != wanted_curve:
        _refuse(rule, given)
    key_type = key_type or wanted_type or 'rsa'
    if key_type == 'ecdsa':
        curve = wanted_curve or (_CURVE_NAMES[normalize_curve(curve)] if curve else 'secp256r1')
        if _CURVE_BITS[curve] < minimum:
            _refuse(rule, given or 'its msPKI-Minimal-Key-Size %d is larger than the curve (%d bits)'
                    % (minimum, _CURVE_BITS[curve]))
        params.update(key_type='ecdsa', key_size=None, curve=curve)
        return params
    size = key_size or max(RSA_MIN_BITS, minimum)
    if size < minimum:
        _refuse(rule, given)
    params.update(key_type='rsa', key_size=size, curve=None)
    return params


def template_hash(rule):
    """The signature hash of a CSR for the template (msPKI-Hash-Algorithm when sha256/384/512), or None."""
    hash_name = (rule or {}).get('hash_algorithm')
    return hash_name if hash_name in SIGNATURE_HASHES else None


def template_key_problem(rule, key):
    """Why the (private or public) ``key`` does not fit the template's key ``rule``, or None when it does."""
    if not rule:
        return None
    kind, detail = key_description(key)
    bits = detail if kind == 'rsa' else _CURVE_BITS.get(detail, 0)
    wanted_type, wanted_curve = rule.get('key_type'), rule.get('curve')
    fits = bits >= (rule.get('minimum_size') or 0)
    if rule.get('algorithm'):
        fits = fits and kind == wanted_type and (wanted_curve is None or detail == wanted_curve)
    if fits:
        return None
    have = 'an RSA key of %d bits' % detail if kind == 'rsa' else \
        'an ECDSA key on %s' % detail if kind == 'ecdsa' else 'a %s key' % kind
    return 'template %s requires %s; the key is %s' % (rule.get('template') or '(unnamed)', _requirement(rule), have)
