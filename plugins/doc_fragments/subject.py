# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # The subject options of a request (argument_spec: module_utils/_argspec.py subject_argument_spec()).
    DOCUMENTATION = r'''
options:
  subject:
    description:
      - "Subject of the request, as a dictionary (for example C({CN: web01.example.com, O: Example})), an RFC 4514
        string (C(CN=web01.example.com,O=Example)) or an OpenSSL-style string (C(/O=Example/CN=web01.example.com))."
    type: raw
  common_name:
    description:
      - Common name of the subject (a shortcut for a O(subject) with only C(CN)).
    type: str
  subject_alt_name:
    description:
      - Subject alternative names, each C(DNS:name), C(IP:address), C(UPN:user@realm), C(email:addr) or C(URI:uri).
    type: list
    elements: str
'''
