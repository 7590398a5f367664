"""Process helpers for the lab: liveness, port waits, stopping a process group and waiting for its children."""

import errno
import os
import signal
import socket
import time


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    # A zombie still answers kill(0): look at its state.
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def read_pid_file(path):
    """The pid in a pid file when that process is alive, else None."""
    try:
        with open(path) as handle:
            pid = int(handle.read().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _group_members(pgid):
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] = state, fields[2] = pgrp
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry))
    return members


def stop_process_group(pid, timeout=20):
    """SIGTERM the process (and its group when it leads one), wait for all of them, SIGKILL what stays."""
    try:
        pgid = os.getpgid(pid)
    except OSError:
        return
    use_group = pgid == pid
    try:
        if use_group:
            os.killpg(pgid, signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except OSError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = _group_members(pgid) if use_group else ([pid] if pid_alive(pid) else [])
        if not alive:
            return
        time.sleep(0.2)
    for member in (_group_members(pgid) if use_group else [pid]):
        try:
            os.kill(member, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.5)


def port_open(address, port, timeout=1.0):
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_for_port(address, port, deadline, what="service"):
    while time.monotonic() < deadline:
        if port_open(address, port, 0.5):
            return
        time.sleep(0.2)
    raise TimeoutError("%s did not open %s:%d in time" % (what, address, port))
