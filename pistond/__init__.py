"""pistond: run untrusted programs in many languages inside Linux sandboxes, fast.

The public front: the plugin marker, what a runtime plugin builds (``Runtime``, its
``RootView`` and ``Bind``) and is given (``DaemonConfig``), the records clients see, the errors
with their protocol codes, and the version. The client lives in :mod:`pistond.client`, the test
kit in :mod:`pistond.testing`.
"""

from __future__ import annotations

from pistond._version import __version__ as __version__
from pistond.config import DaemonConfig as DaemonConfig
from pistond.errors import ErrorCode as ErrorCode
from pistond.errors import Forbidden as Forbidden
from pistond.errors import InternalError as InternalError
from pistond.errors import InvalidParams as InvalidParams
from pistond.errors import InvalidRequest as InvalidRequest
from pistond.errors import JobNotFound as JobNotFound
from pistond.errors import MethodNotFound as MethodNotFound
from pistond.errors import Overloaded as Overloaded
from pistond.errors import PackageError as PackageError
from pistond.errors import PackageNotFound as PackageNotFound
from pistond.errors import PistondError as PistondError
from pistond.errors import RuntimeUnknown as RuntimeUnknown
from pistond.hookspecs import hookimpl as hookimpl
from pistond.models import JobResult as JobResult
from pistond.models import RuntimeInfo as RuntimeInfo
from pistond.models import StageName as StageName
from pistond.models import StageResult as StageResult
from pistond.models import StageStatus as StageStatus
from pistond.models import TestResult as TestResult
from pistond.models import Verdict as Verdict
from pistond.runtimes import Runtime as Runtime
from pistond.sandbox.spec import Bind as Bind
from pistond.sandbox.spec import RootView as RootView
