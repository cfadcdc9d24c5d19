"""Settings for the whole suite."""

from __future__ import annotations

from hypothesis import settings

# Property tests assert behaviour, never speed: on a loaded 2-core CI machine one example may
# take longer than hypothesis' default 200 ms deadline without anything being wrong.
settings.register_profile("failsmall", deadline=None)
settings.load_profile("failsmall")
