"""What staging.init decided: the values it writes and the lines it says."""
from dataclasses import dataclass, field
from typing import Dict, List, Optional


@dataclass
class SlotService:
    """One service of the slot file (compose/app.yaml's shape) as init writes it."""
    name: str
    environment: Dict[str, str]
    healthcheck: Optional[dict] = None
    command: object = None
    depends_on: List[str] = field(default_factory=list)


@dataclass
class Adoption:
    deploy: Dict[str, object]            # invoke.yaml's `deploy:` keys
    slot: List[SlotService]
    secrets: List[str]                   # every secret the team must provide (.env, CI)
    ci_workflow: str                     # the team's CI workflow file, "" if none
    decided: List[str] = field(default_factory=list)
    confirm: List[str] = field(default_factory=list)
