# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test-suite stdout callback: the whole run as one JSON document (plays -> tasks -> hosts -> result, and stats).

ansible-core ships no JSON stdout callback (it lives in ansible.posix), so the integration tests bring this one.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r'''
name: adcs_json
type: stdout
short_description: the run as one JSON document, for the adcs.enrollment test suite
description:
  - Prints plays, tasks, per-host results and stats as one JSON document at the end of the run.
'''

import json

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = 'stdout'
    CALLBACK_NAME = 'adcs_json'

    def __init__(self, display=None):
        super(CallbackModule, self).__init__(display)
        self.results = []

    def _new_play(self, play):
        return {'play': {'name': play.get_name(), 'id': str(play._uuid)}, 'tasks': []}

    def _new_task(self, task):
        return {'task': {'name': task.get_name(), 'id': str(task._uuid), 'action': task.action}, 'hosts': {}}

    def v2_playbook_on_play_start(self, play):
        self.results.append(self._new_play(play))

    def v2_playbook_on_task_start(self, task, is_conditional):
        if not self.results:
            self.results.append({'play': {'name': 'adhoc', 'id': ''}, 'tasks': []})
        self.results[-1]['tasks'].append(self._new_task(task))

    def v2_playbook_on_handler_task_start(self, task):
        self.v2_playbook_on_task_start(task, False)

    def _record(self, result, **flags):
        host = result._host.get_name()
        data = dict(result._result)
        data.update(flags)
        task_id = str(result._task._uuid)
        for play in reversed(self.results):
            for task in reversed(play['tasks']):
                if task['task']['id'] == task_id:
                    task['hosts'][host] = data
                    return
        # ad-hoc runs have no task start event: create the task entry now
        if not self.results:
            self.results.append({'play': {'name': 'adhoc', 'id': ''}, 'tasks': []})
        entry = self._new_task(result._task)
        entry['hosts'][host] = data
        self.results[-1]['tasks'].append(entry)

    def v2_runner_on_ok(self, result, **kwargs):
        self._record(result)

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._record(result, failed=True, ignore_errors=ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._record(result, unreachable=True)

    def v2_runner_on_skipped(self, result):
        self._record(result, skipped=True)

    def v2_playbook_on_stats(self, stats):
        summary = {}
        for host in sorted(stats.processed.keys()):
            summary[host] = stats.summarize(host)
        self._display.display(json.dumps({'plays': self.results, 'stats': summary}, indent=2, sort_keys=True,
                                         default=str))
