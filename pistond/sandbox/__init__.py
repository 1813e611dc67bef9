"""The sandbox: what one stage of a job runs in (DESIGN.md "Sandbox").

This package's front holds only the records that describe a sandbox (light to import: plugins
and clients use them); the service that runs them is :mod:`pistond.sandbox.service`
(``open_sandbox``, ``Sandbox``, ``Box``), the seam the job manager codes against is
:mod:`pistond.sandbox.contract`, and each kernel concern has its own module.
"""

from __future__ import annotations

from pistond.sandbox.spec import Bind as Bind
from pistond.sandbox.spec import RootView as RootView
from pistond.sandbox.spec import SpawnSpec as SpawnSpec
from pistond.sandbox.spec import StageLimits as StageLimits
from pistond.sandbox.spec import StageSpec as StageSpec
