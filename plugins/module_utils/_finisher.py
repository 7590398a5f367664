# -*- coding: utf-8 -*-
# Copyright (c) the adcs.enrollment contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The finisher of a run: one job, finishing the requests of a run in order in one background thread while the next
request is at the CA.

``_enroller.Enroller.execute`` talks to the CA in the calling thread and hands back either a result or a function
that finishes the request without the CA (verify the certificate against the anchors, compare it with what was
asked, write the files). In a run of several requests the ``Finisher`` calls those functions in ONE worker thread,
in the order given, so the files of a request are written while the CA issues the next one (the session itself is
only ever used by the calling thread). With ``background=False`` (one request, check mode) they are called at once.
A finishing function that raises gives that request's failure result (an exception that is not an AdcsError as
"Unexpected error while finishing the request"); a module exit in the thread (``fail_json``) ends the run in the
calling thread before the next CA call. ``Workers`` (background threads
of a run, started on first use) is shared with ``_keygen.KeyMaker``.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.adcs.enrollment.plugins.module_utils._errors import AdcsError


class Workers(object):
    """Background threads of a run, started on first use (``submit``); as a context manager, leaving it waits for
    the work handed over (``cancel``: work not started yet is dropped instead)."""

    def __init__(self, workers, prefix, cancel=False):
        self.workers = workers
        self._prefix = prefix
        self._cancel = cancel
        self._executor = None

    def submit(self, fn, *args):
        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor   # only runs that use threads pay for the import
            self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix=self._prefix)
        return self._executor.submit(fn, *args)

    def close(self):
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=self._cancel)
            self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Finisher(Workers):
    """``add(spec, outcome)``: a result dict, or a function returning one; ``results(failure)``: the results in
    order (``failure(spec, exc)`` makes the result of a finishing function that raised an AdcsError). Use as a
    context manager: leaving it waits for the work handed to the thread."""

    def __init__(self, background=True):
        Workers.__init__(self, 1, 'adcs-finish')
        self.background = background
        self._outcomes = []   # (spec, result dict | future | function)

    def add(self, spec, outcome):
        self._stop_if_exited()
        if callable(outcome) and self.background:
            outcome = self.submit(_guarded, spec, outcome)
        elif callable(outcome):
            outcome = _guarded(spec, outcome)
        self._outcomes.append((spec, outcome))

    def _stop_if_exited(self):
        """The module exited in the thread (AnsibleModule.fail_json, e.g. a file attribute it could not set, has
        printed the module's result): the calling thread exits too, before it asks the CA for anything more."""
        for _spec, outcome in self._outcomes:
            done = getattr(outcome, 'done', None)
            if done is not None and done() and isinstance(outcome.result(), _Exited):
                raise outcome.result().exc
            if isinstance(outcome, _Exited):
                raise outcome.exc

    def results(self, failure):
        out = []
        for spec, outcome in self._outcomes:
            if hasattr(outcome, 'result') and not isinstance(outcome, dict):
                outcome = outcome.result()
            if isinstance(outcome, _Exited):
                raise outcome.exc
            if isinstance(outcome, AdcsError):
                outcome = failure(spec, outcome)
            out.append(outcome)
        return out


class _Exited(object):
    """The SystemExit of ``AnsibleModule.exit_json``/``fail_json`` called in the thread, re-raised by the caller."""

    def __init__(self, exc):
        self.exc = exc


def _guarded(spec, finish):
    """The result of ``finish()``, or the AdcsError it raised (turned into the request's failure in order); any
    other exception fails this request only (the files of the others are theirs); a module exit stops the run."""
    try:
        return finish()
    except AdcsError as exc:
        return exc
    except Exception as exc:  # pylint: disable=broad-except  # a library error on this certificate: its failure
        return AdcsError('Unexpected error while finishing the request: %s: %s' % (type(exc).__name__, exc))
    except SystemExit as exc:
        return _Exited(exc)
