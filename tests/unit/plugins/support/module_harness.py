# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs a module's main() in-process with given arguments, as Ansible would, for the module unit tests."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json

import pytest

from ansible.module_utils import basic


class Exit(Exception):
    """What the module ended with: ``result`` (exit_json/fail_json arguments), ``failed``, ``warnings``."""

    def __init__(self, result, failed):
        super(Exit, self).__init__(result)
        self.result = result
        self.failed = failed
        self.warnings = []


def run_module(main, args, check_mode=False, diff=False):
    """Call ``main`` with ``args`` (plus check/diff mode); return the Exit it ended with."""
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    warnings = []

    def exit_json(self, **kwargs):
        raise Exit(kwargs, False)

    def fail_json(self, msg, **kwargs):
        kwargs['msg'] = msg
        raise Exit(kwargs, True)

    mp = pytest.MonkeyPatch()
    mp.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    mp.setattr(basic.AnsibleModule, 'fail_json', fail_json)
    mp.setattr(basic.AnsibleModule, 'warn', lambda self, text: warnings.append(text))
    try:
        try:
            from ansible.module_utils.testing import patch_module_args
        except ImportError:  # ansible-core < 2.19
            mp.setattr(basic, '_ANSIBLE_ARGS', json.dumps({'ANSIBLE_MODULE_ARGS': args}).encode())
            with pytest.raises(Exit) as exc:
                main()
        else:
            with patch_module_args(args):
                with pytest.raises(Exit) as exc:
                    main()
    finally:
        mp.undo()
    exc.value.warnings = warnings
    return exc.value
