# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The finisher of a run (_finisher): finishing functions run in order in one background thread, results in order,
an AdcsError becomes that request's failure, nothing in the background for one request."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import threading

import pytest

from ansible_collections.adcs.enrollment.plugins.module_utils import _finisher
from ansible_collections.adcs.enrollment.plugins.module_utils._errors import FileOutputError


def _failure(spec, exc):
    return {'failed': True, 'spec': spec, 'msg': exc.to_message()}


def test_functions_run_in_order_in_one_background_thread():
    ran = []
    gate = threading.Event()

    def finish(name, wait=False):
        def run():
            if wait:
                gate.wait(5)
            ran.append((name, threading.current_thread().name))
            return {'name': name}
        return run

    with _finisher.Finisher() as finisher:
        finisher.add('s1', finish('one', wait=True))
        finisher.add('s2', {'name': 'ready'})
        finisher.add('s3', finish('three'))
        assert ran == []              # the first waits: nothing ran yet, the caller was not held up
        gate.set()
    assert [r['name'] for r in finisher.results(_failure)] == ['one', 'ready', 'three']
    assert [name for name, _thread in ran] == ['one', 'three']
    assert len(set(thread for _name, thread in ran)) == 1 and ran[0][1].startswith('adcs-finish')


def test_an_adcs_error_is_that_requests_failure_and_others_go_on():
    def broken():
        raise FileOutputError('Cannot write a temporary file for /x/y.crt')

    with _finisher.Finisher() as finisher:
        finisher.add('s1', broken)
        finisher.add('s2', lambda: {'name': 'two'})
    first, second = finisher.results(_failure)
    assert first == {'failed': True, 'spec': 's1', 'msg': 'Cannot write a temporary file for /x/y.crt.'}
    assert second == {'name': 'two'}


def test_other_exceptions_fail_that_request_only():
    """A library error on one certificate (not an AdcsError) is that request's failure, named; the others go on."""
    def bug():
        raise ValueError('error parsing asn1 value')

    with _finisher.Finisher() as finisher:
        finisher.add('s1', bug)
        finisher.add('s2', lambda: {'name': 'two'})
    first, second = finisher.results(_failure)
    assert first == {'failed': True, 'spec': 's1', 'msg': 'Unexpected error while finishing the request: '
                                                          'ValueError: error parsing asn1 value'}
    assert second == {'name': 'two'}


def test_a_module_exit_in_the_thread_stops_the_run_before_the_next_request():
    """fail_json in the thread (it printed the module's result): the caller exits at its next step."""
    def exits():
        raise SystemExit(1)

    finisher = _finisher.Finisher()
    with pytest.raises(SystemExit):
        with finisher:
            finisher.add('s1', exits)
            finisher._outcomes[0][1].exception(5)         # waits until the thread has run it
            finisher.add('s2', lambda: {'name': 'two'})   # the caller stops here, before more CA work
    assert len(finisher._outcomes) == 1
    with pytest.raises(SystemExit):
        finisher.results(_failure)


def test_without_background_functions_run_at_once_in_the_caller():
    threads = []
    with _finisher.Finisher(background=False) as finisher:
        finisher.add('s1', lambda: threads.append(threading.current_thread().name) or {'name': 'one'})
        assert threads == [threading.current_thread().name]
    assert finisher.results(_failure) == [{'name': 'one'}]
