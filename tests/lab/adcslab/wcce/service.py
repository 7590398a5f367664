"""Assemble the lab CA's RPC endpoints: port 135 (activation, OXID resolver, endpoint mapper), the object
exporter port (IRemUnknown(2), ICertRequestD(2)) and the MS-ICPR port, all served by one CA backend."""

import logging
import socket
import threading

from . import constants as C
from .certsrv import CertService
from .dcom import ComClass, DcomFault, ObjectExporter, OxidResolver, RemUnknown, ScmActivator
from .ndr import ComVersionError, NdrError

LOG = logging.getLogger("adcslab.wcce.service")

RPC_S_CALL_FAILED = 0x6BE
REAP_INTERVAL = 60


def guard(fn, name):
    """Map handler exceptions to RPC faults: bad stub data, DCOM faults, and never a traceback to the client."""
    from adcslab.rpc import RpcFault

    def handler(ctx, stub):
        try:
            return fn(ctx, stub)
        except RpcFault:
            raise
        except DcomFault as exc:
            raise RpcFault(exc.status)
        except ComVersionError as exc:
            LOG.warning("%s: %s", name, exc)
            raise RpcFault(C.RPC_E_VERSION_MISMATCH)
        except NdrError as exc:
            LOG.warning("%s: malformed request from %s: %s", name, getattr(ctx.connection, "peer", "?"), exc)
            raise RpcFault(C.RPC_X_BAD_STUB_DATA)
        except Exception:
            LOG.exception("%s: handler failed", name)
            raise RpcFault(RPC_S_CALL_FAILED)

    handler.__name__ = getattr(fn, "__name__", name)
    return handler


def _interface(uuid_str, handlers, name, faults=None, **kwargs):
    from adcslab.rpc import Interface

    if faults is not None:
        handlers = {opnum: faults.wrap(fn, name) for opnum, fn in handlers.items()}
    guarded = {opnum: guard(fn, "%s opnum %d" % (name, opnum)) for opnum, fn in handlers.items()}
    return Interface(uuid_str, (0, 0), guarded, name=name, **kwargs)


class _RefusingListener:
    """Wraps a listening socket: ``accept()`` resets the connections ``hook(server, sock, peer)`` refuses (returns
    False) and reports them to the accept loop as a timeout (nothing accepted); everything else is delegated."""

    def __init__(self, sock, server, hook):
        self._listener = sock
        self._server = server
        self._hook = hook

    def accept(self):
        conn, peer = self._listener.accept()
        try:
            accepted = self._hook(self._server, conn, peer)
        except Exception:
            LOG.exception("connection filter failed; accepting %s", peer)
            accepted = True
        if accepted is False:
            try:
                conn.close()
            except OSError:
                pass
            raise socket.timeout("connection refused by a fault knob")
        return conn, peer

    def __getattr__(self, name):
        return getattr(self._listener, name)


class LabCaService:
    """The running set of servers. ``start()`` binds everything; ``endpoints()`` tells where."""

    def __init__(self, ca, accounts, address, rpc_port=135, exporter_port=0, icpr_port=0, server_options=None,
                 state_dir=None):
        self.ca = ca
        # Fault knobs (STATE_DIR/faults.json, see adcslab.faults): only when a state dir is given.
        self.faults = None
        if state_dir:
            from .faultinject import FaultInjector

            self.faults = FaultInjector(state_dir)
            ca.alter_names = self.faults.alter_names  # alter_subject / alter_san act where the CA builds names
        self.accounts = accounts
        self.address = address
        self.rpc_port = rpc_port
        self.exporter_port = exporter_port
        self.icpr_port = icpr_port
        dns_name = getattr(ca, "dns_name", "") or ""
        # the NetBIOS computer name (the CDP container's %2 is the same name): at most 15 characters, as Windows
        host = (getattr(ca, "server_short_name", "") or dns_name.split(".")[0]).upper()[:15] if dns_name else ""
        domain = dns_name.split(".", 1)[1] if "." in dns_name else ""
        netbios_domain = domain.split(".")[0].upper() if domain else ""
        principal = ("%s\\%s$" % (netbios_domain, host)) if host and domain else ""
        self.server_options = {}
        if host and domain:
            self.server_options.update(netbios_domain=netbios_domain, dns_domain=domain, netbios_computer=host,
                                       dns_computer=dns_name)
        self.server_options.update(server_options or {})
        self.exporter = ObjectExporter(dns_name=dns_name, netbios_name=host, principal=principal)
        self.exporter.register_class(ComClass(C.CLSID_CCERTREQUESTD, [C.IID_ICERTREQUESTD, C.IID_ICERTREQUESTD2],
                                              name="CCertRequestD"))
        self.cert_service = CertService(ca, self.exporter, faults=self.faults)
        self.servers = []
        self.main_server = None
        self.exporter_server = None
        self.icpr_server = None
        self.epm = None
        self._stop = threading.Event()
        self._reaper = None

    def _server(self, port, interfaces):
        from adcslab.rpc import RpcServer

        server = RpcServer(self.address, port, interfaces, self.accounts, **self.server_options)
        if self.faults is not None:
            server.hooks.before_call = self.faults.before_call
            if hasattr(server.hooks, "on_accept"):
                server.hooks.on_accept = self.faults.on_accept
        return server

    def _start(self, server):
        server.start()
        if self.faults is not None and not hasattr(server.hooks, "on_accept"):
            # The engine has no accept hook (yet): filter what its accept loop gets from the listening socket.
            server._sock = _RefusingListener(server._sock, server, self.faults.on_accept)
        return server

    def start(self):
        from adcslab.rpc.epm import EndpointMapper

        svc = self.cert_service
        rem = RemUnknown(self.exporter)
        # Object exporter: IRemUnknown(2) and the CA's DCOM interfaces; the IPID travels as object UUID.
        self.exporter_server = self._server(self.exporter_port, [
            _interface(C.IID_IREMUNKNOWN2, rem.handlers(), "IRemUnknown2", faults=self.faults,
                       requires_object_uuid=True, min_authn_level=C.AUTHN_LEVEL_PKT_INTEGRITY),
            _interface(C.IID_IREMUNKNOWN, rem.handlers(), "IRemUnknown", faults=self.faults,
                       requires_object_uuid=True, min_authn_level=C.AUTHN_LEVEL_PKT_INTEGRITY),
            _interface(C.IID_ICERTREQUESTD, svc.dcom_handlers(False), "ICertRequestD", faults=self.faults,
                       requires_object_uuid=True, min_authn_level=C.AUTHN_LEVEL_PKT_PRIVACY),
            _interface(C.IID_ICERTREQUESTD2, svc.dcom_handlers(True), "ICertRequestD2", faults=self.faults,
                       requires_object_uuid=True, min_authn_level=C.AUTHN_LEVEL_PKT_PRIVACY),
        ])
        self._start(self.exporter_server)
        self.servers.append(self.exporter_server)
        self.exporter.port = self.exporter_server.port
        # MS-ICPR on its own dynamic port.
        self.icpr_server = self._server(self.icpr_port, [
            _interface(C.IID_ICERTPASSAGE, svc.icpr_handlers(), "ICertPassage", faults=self.faults,
                       min_authn_level=C.AUTHN_LEVEL_PKT_PRIVACY),
        ])
        self._start(self.icpr_server)
        self.servers.append(self.icpr_server)
        # Port 135: activation, OXID resolver, endpoint mapper.
        scm = ScmActivator(self.exporter)
        self.epm = EndpointMapper()
        self.epm.register(C.IID_ICERTPASSAGE, (0, 0), protocol="ncacn_ip_tcp", address=self.address,
                          port=self.icpr_server.port)
        self.main_server = self._server(self.rpc_port, [
            _interface(C.IID_IREMOTESCMACTIVATOR, scm.handlers(), "IRemoteSCMActivator", faults=self.faults,
                       min_authn_level=C.AUTHN_LEVEL_PKT_INTEGRITY),
            _interface(C.IID_IACTIVATION, scm.activation_handlers(), "IActivation", faults=self.faults,
                       min_authn_level=C.AUTHN_LEVEL_PKT_INTEGRITY),
            _interface(C.IID_IOBJECTEXPORTER, OxidResolver([self.exporter]).handlers(), "IObjectExporter",
                       faults=self.faults),
            self.epm.interface(),
        ])
        self._start(self.main_server)
        self.servers.append(self.main_server)
        self._reaper = threading.Thread(target=self._reap, name="dcom-reaper", daemon=True)
        self._reaper.start()
        LOG.info("lab CA %s listening on %s: rpc %d, object exporter %d, icpr %d", self.ca.name, self.address,
                 self.main_server.port, self.exporter.port, self.icpr_server.port)
        return self

    def _reap(self):
        while not self._stop.wait(REAP_INTERVAL):
            try:
                self.exporter.expire()
            except Exception:
                LOG.exception("object reaper failed")

    def endpoints(self):
        return {"address": self.address, "rpc_port": self.main_server.port,
                "object_exporter_port": self.exporter.port, "icpr_port": self.icpr_server.port}

    def stop(self):
        self._stop.set()
        for server in reversed(self.servers):
            try:
                server.stop()
            except Exception:
                LOG.exception("stopping %r failed", server)
        self.servers = []
