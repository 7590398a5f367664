"""Lab CA backend (issuance, request database, CA properties) behind the MS-WCCE / MS-ICPR handlers."""

from .authority import CAResponse, CertificationAuthority, Requester, parse_attributes
from .errors import CAError
from .templates import BuiltinTemplateSource, Template, TemplateSource

__all__ = ["CertificationAuthority", "Requester", "CAResponse", "CAError", "Template", "TemplateSource",
           "BuiltinTemplateSource", "parse_attributes"]
