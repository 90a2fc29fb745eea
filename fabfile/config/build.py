"""What each image's build is given: its context and Dockerfile, build args resolved from
non-secret settings, a target stage, and build secrets by name.

A build arg stays in the image's history (`docker history` shows it), so it may read only
non-secret values: `${NAME}` in its value is a variable of the app's `clear` environment or a
non-secret setting of the tool (STAGING_URL, ...). A secret the build needs (a private package
registry's token) is a build secret: BuildKit mounts it for one RUN step, it is read from the
environment (or .env) by name, and only its name ever appears in a command.
"""
import re
from typing import Any, Dict, List, Mapping, Set, Tuple

from .declared import Service
from .definitions import SECRET_MIN, SETTINGS_BY_ENV

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def read_services(declared: Mapping, environ: Mapping[str, str], clear: Mapping[str, str],
                  values: Mapping[str, Any], problems: List[str]
                  ) -> Tuple[Tuple[Service, ...], Dict[str, str]]:
    """invoke.yaml `services` (already checked in shape) as Services, and the build secrets'
    values by name (for the build's environment only)."""
    public = {name: str(value) for name, value in values.items()
              if value is not None and name in SETTINGS_BY_ENV and not SETTINGS_BY_ENV[name].secret}
    public.update(clear)
    secret = {n for n, s in SETTINGS_BY_ENV.items() if s.secret}
    secret |= set((declared.get("app_env") or {}).get("secret") or ())
    services, secrets = [], {}
    for name, spec in (declared.get("services") or {}).items():
        args = []
        for arg, template in (spec.get("args") or {}).items():
            value, wrong = resolve(str(template), public, secret)
            if wrong:
                problems.append(f"invoke.yaml deploy.services.{name}.args.{arg}: {wrong}")
            args.append((arg, value))
        for secret in spec.get("secrets") or []:
            value = environ.get(secret, "")
            if len(value) < SECRET_MIN:
                problems.append(f"{secret} (a build secret of {name}) must be set in the "
                                f"environment or .env, at least {SECRET_MIN} characters")
            secrets[secret] = value
        services.append(Service(name, spec["context"], spec.get("dockerfile") or "Dockerfile",
                                tuple(args), spec.get("target") or "",
                                tuple(spec.get("secrets") or ())))
    return tuple(services), secrets


def resolve(template: str, public: Mapping[str, str], secret: Set[str]) -> Tuple[str, str]:
    """`template` with each ${NAME} replaced by its non-secret value; (value, problem)."""
    unknown = []

    def value_of(match: "re.Match[str]") -> str:
        name = match.group(1) or match.group(2)
        if name not in public:
            unknown.append(name)
            return ""
        return public[name]
    value = REFERENCE.sub(value_of, template)
    if unknown:
        name = unknown[0]
        if name in secret:
            return value, (f"{name} is a secret: a build arg stays in the image's history "
                           "(use the service's `secrets:` and a RUN --mount=type=secret)")
        return value, (f"${{{name}}} is not a variable of app_env.clear or a non-secret setting "
                       f"(declare it under app_env.clear: {name}: <value>)")
    return value, ""
