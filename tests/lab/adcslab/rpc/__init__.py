"""Connection-oriented DCE/RPC server engine for the lab CA (NTLM, packet integrity/privacy, EPM).

Public API (see server.py / security.py for details)::

    from adcslab.rpc import RpcServer, Interface, CallContext, AuthInfo, RpcFault, AccountStore
"""

from . import constants
from .accounts import Account, AccountStore
from .security import (AcceptResult, AuthError, IntegrityError, SecurityContext, SecurityProvider,
                       ServerIdentity)
from .ntlmssp import NtlmContext, NtlmProvider
from .server import AuthInfo, CallContext, Connection, Interface, RpcFault, RpcServer, ServerHooks

__all__ = [
    "constants", "Account", "AccountStore", "AcceptResult", "AuthError", "IntegrityError", "SecurityContext",
    "SecurityProvider", "ServerIdentity", "NtlmContext", "NtlmProvider", "AuthInfo", "CallContext", "Connection",
    "Interface", "RpcFault", "RpcServer", "ServerHooks",
]
