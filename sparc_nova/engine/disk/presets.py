"""The disk engine's presets are the shared vocabulary's
(:mod:`sparc_nova.vocabulary.presets`); this name stays for the callers
of the engine.
"""

from sparc_nova.vocabulary.presets import get
from sparc_nova.vocabulary.presets import Preset
from sparc_nova.vocabulary.presets import PRESETS

__all__ = ['Preset', 'PRESETS', 'get']
