"""Which target runs the releases (DEPLOY_TARGET, invoke.yaml `target`): the compose package
(one server) or the swarm package. Both implement story/target.py's interface."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .compose.target import ComposeTarget
from .swarm.target import SwarmTarget

if TYPE_CHECKING:
    from .config.settings import Settings
    from .story.target import Target


def target_for(settings: Settings) -> Target:
    return SwarmTarget(settings) if settings.on_swarm else ComposeTarget(settings)
