# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):

    # Modules that only read (the *_info modules and wcce_trust_anchors).
    INFO_MODULE = r'''
attributes:
  check_mode:
    support: full
    description: The module only reads.
'''

    # Modules that write files on the managed host (check_mode and diff_mode stay in each module).
    FILES = r'''
attributes:
  platform:
    support: full
    platforms: posix
  safe_file_operations:
    description: Uses Ansible's strict file operation functions to ensure proper permissions and avoid data corruption.
    support: full
'''
