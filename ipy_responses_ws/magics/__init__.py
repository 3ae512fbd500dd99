"""The notebook face: ``%%respond`` and ``%responses`` (the only part of the package that imports IPython).

One room per concern, imports one way (``_extension`` → ``commands`` → the rest → session):

* ``commands``  the :class:`ResponsesMagics` class: traits, argument parsing, the two magics;
* ``holder``    :class:`SessionHolder`, the state that outlives a cell (the session, conversations kept by
  ``%responses close``, toggles' listeners, the last result), created at ``%load_ext`` and passed in;
* ``turns``     how a cell runs its turn: foreground (interruptible), background, plain text;
* ``prompt``    ``{name}`` interpolation (lookups only);
* ``control``   what ``%responses`` prints and parses.
"""

from __future__ import annotations

from .commands import ResponsesMagics
from .holder import SessionHolder
from .prompt import interpolate
from .turns import NO_KEY_MESSAGE, TurnInterrupted

__all__ = ["NO_KEY_MESSAGE", "ResponsesMagics", "SessionHolder", "TurnInterrupted", "interpolate"]
