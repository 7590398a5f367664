# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The results of wcce_request as the module returns them: one job, the vocabulary of a request's ``action``, the
one-line ``msg`` of each result, and the module's exit with one result or several (warnings, --diff, failure).

Light on purpose (no cryptography): a run answered from the no-op records (``_fits``) exits through here too.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

# What a request needs (``_plan``) and what its result says it did.
ACTION_NONE = 'none'
ACTION_ENROLL = 'enroll'
ACTION_RETRIEVE = 'retrieve'
ACTION_REFRESH = 'refresh'


def summary(result):
    """The one-line ``msg`` of a request's result."""
    if result.get('failed'):
        return result.get('msg')
    action, disposition = result.get('action'), result.get('disposition')
    if disposition == 'issued':
        return 'Certificate issued by %s (request ID %s) and written to %s' % (
            (result.get('ca') or {}).get('name'), result.get('request_id'), result.get('certificate_path'))
    if disposition == 'pending':
        return result.get('msg')
    if action == ACTION_NONE:
        return 'The certificate fits: %s' % result.get('reason')
    if action == ACTION_REFRESH:
        return 'Output files rewritten: %s' % result.get('reason')
    return 'A certificate would be requested: %s' % result.get('reason')


def finish(module, results, many, **extra):
    """Exit the module with the results: one request's result as the module result, or ``results`` (``many``,
    with the ``extra`` return values)."""
    diff_wanted = module._diff
    for result in results:
        for warning in result.pop('warnings', []) or []:
            module.warn(warning)
        diff = result.pop('diff', None)
        if diff_wanted and diff is not None:
            result['_diff'] = diff
        if not result.get('failed'):
            result['msg'] = summary(result)
    if not many:
        result = results[0]
        diff = result.pop('_diff', None)
        if diff is not None:
            result['diff'] = diff
        if result.get('failed'):
            module.fail_json(**result)
        module.exit_json(**result)
    diffs = [r.pop('_diff') for r in results if '_diff' in r]
    out = dict(extra, changed=any(r.get('changed') for r in results), results=results)
    if diffs:
        out['diff'] = diffs
    failed = [(i, r) for i, r in enumerate(results) if r.get('failed')]
    if failed:
        out['msg'] = '%d of %d requests failed: %s' % (
            len(failed), len(results), ' | '.join('requests[%d]: %s' % (i, r['msg']) for i, r in failed))
        module.fail_json(**out)
    out['msg'] = '%d requests: %s' % (len(results), ', '.join(
        '%s' % (r.get('disposition') or r.get('action')) for r in results))
    module.exit_json(**out)
