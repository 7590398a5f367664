# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The private key options (argument_spec: module_utils/_argspec.py key_argument_spec()).
    DOCUMENTATION = r'''
options:
  private_key_path:
    description:
      - Private key file (PEM or DER, PKCS#1/PKCS#8/SEC1). Generated (PEM PKCS#8) when missing.
    type: path
  private_key_passphrase:
    description:
      - Passphrase of the private key; a generated key is encrypted with it.
    type: str
  private_key_mode:
    description:
      - Mode of the private key file, taken as M(ansible.builtin.file) takes O(mode); an integer is the mode itself
        (YAML C(0640) unquoted), a string is octal (C('0640')) or symbolic (C(u=rw,g=r)).
      - A mode that lets the group write or gives others any access (any bit of C(0027)) is refused.
    type: raw
  key_type:
    description:
      - Type of a generated key.
      - When set, an existing key of another type or size makes the module fail (or be replaced with
        O(regenerate_key=true)).
      - Where the certificate template is read from Active Directory (adcs.enrollment.wcce_request with its
        C(domain) option), the template decides what O(key_type), O(key_size) and O(curve) leave open. A CNG
        template (schema version 3, or 4 without the legacy-provider flag) names its algorithm in
        C(msPKI-Asymmetric-Algorithm) of C(msPKI-RA-Application-Policies) - C(ECDSA_P256) gives an ECDSA key on
        C(secp256r1), C(ECDSA_P384) one on C(secp384r1), C(RSA) an RSA key of C(msPKI-Minimal-Key-Size) bits (at
        least 2048) - and its C(msPKI-Hash-Algorithm) (SHA256, SHA384 or SHA512) signs the request. A legacy CSP
        template gives an RSA key of C(msPKI-Minimal-Key-Size) bits (at least 2048).
      - A key type, size or curve the template refuses (another algorithm or curve, fewer bits than its minimum; an
        ECDSA key on a legacy template, whose minimum counts the bits of any key) fails before the CA is contacted,
        with a message naming the template's requirement; so does an existing key at O(private_key_path) or the key
        of a CSR that does not fit the template.
    type: str
    choices: [rsa, ecdsa]
  key_size:
    description:
      - Size in bits of a generated RSA key (2048 to 8192); see O(key_type) for the default from the template.
    type: int
  curve:
    description:
      - Curve of a generated ECDSA key; see O(key_type) for the default from the template.
    type: str
    choices: [secp256r1, secp384r1, secp521r1]
'''

    # The same options with the defaults of a module that generates the key right away (key_argument_spec(True)).
    GENERATED = r'''
options:
  private_key_mode:
    default: '0600'
  key_type:
    default: rsa
  key_size:
    default: 2048
  curve:
    default: secp256r1
'''
