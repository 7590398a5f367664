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
    type: str
    choices: [rsa, ecdsa]
  key_size:
    description:
      - Size in bits of a generated RSA key (2048 to 8192).
    type: int
  curve:
    description:
      - Curve of a generated ECDSA key.
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
