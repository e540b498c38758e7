"""What template.yaml deploys, read as a Lambda container would see it: each function's handler and environment.

The artifact test and the cold-start bench start each handler the way Lambda does, with the variables the template
gives that function once deployed with SAMPLE_PARAMETERS (settings as parameters, no Secrets Manager, no Sentry: the
production configuration `SettingsFromParameters` accepts) plus the ones Lambda itself sets. No value is real and
nothing is connected to at import: a placeholder database URL is only ever dialled by a request that needs it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from deploy.package import REPO

TEMPLATE = REPO / "template.yaml"
REGION = "us-east-1"
# One value for each parameter of template.yaml, each matching its AllowedPattern (checked on reading).
_SECRET = "artifact-check-not-a-real-secret-0123456789"
SAMPLE_PARAMETERS = {
    "SecretsArn": "",
    "PublicBaseUrl": "https://pay.example.com",
    "EmailFrom": "AgentPay <approvals@example.com>",
    "SentryDsn": "",
    "DatabaseUrl": "postgresql://agentpay:unused@db.invalid:5432/agentpay?sslmode=require",
    "UpstashRedisRestUrl": "https://example-12345.upstash.invalid",
    "UpstashRedisRestToken": _SECRET,
    "QstashToken": _SECRET,
    "QstashCurrentSigningKey": "sig_" + _SECRET,
    "QstashNextSigningKey": "sig_next_" + _SECRET,
    "StripeSecretKey": "sk_test_" + _SECRET,
    "ResendApiKey": "re_" + _SECRET,
    "ApprovalJwtSecret": "approval-" + _SECRET,
    "SessionSecret": "session-" + _SECRET,
    "SignupToken": "signup-" + _SECRET,
}
_NO_VALUE = object()


@dataclass(frozen=True)
class DeployedFunction:
    """One AWS::Serverless::Function: where its handler is and how Lambda invokes it."""

    name: str  # its folder under functions/
    module: str  # functions.<name>.app
    attribute: str  # handler
    trigger: Literal["http-api", "function-url", "schedule"]  # what invokes it, so which event shape it receives
    environment: dict[str, str]  # template.yaml's variables for it, resolved


def _load() -> dict[str, Any]:
    from cfnlint.decode import decode  # a dev dependency: this module serves tests and the bench, not Lambda

    template, problems = decode(str(TEMPLATE))
    if problems or template is None:
        raise ValueError(f"template.yaml does not parse: {[str(p) for p in problems]}")
    return template


class _Resolver:
    """Evaluates the intrinsic functions template.yaml uses in environments: Ref, If, Not, Equals, GetAtt."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str]) -> None:
        self.parameters = parameters
        self.conditions = template.get("Conditions", {})

    def value(self, node: Any) -> Any:
        if isinstance(node, str | int | float | bool):
            return str(node)
        if not isinstance(node, dict) or len(node) != 1:
            raise ValueError(f"cannot resolve {node!r}")
        (function, argument), *_ = node.items()
        if function == "Ref":
            if argument == "AWS::NoValue":
                return _NO_VALUE
            if argument == "AWS::Region":
                return REGION
            return self.parameters[argument]
        if function == "Fn::If":
            name, if_true, if_false = argument
            return self.value(if_true if self.condition(name) else if_false)
        if function == "Fn::GetAtt":
            resource, attribute = argument if isinstance(argument, list) else argument.split(".", 1)
            if attribute == "FunctionUrl":  # "https://<url-id>.lambda-url.<region>.on.aws/"
                return f"https://{resource.lower()[:32]:0<32}.lambda-url.{REGION}.on.aws/"
        raise ValueError(f"cannot resolve {node!r}")

    def condition(self, name: str) -> bool:
        return self.truth(self.conditions[name])

    def truth(self, node: Any) -> bool:
        (function, argument), *_ = node.items()
        if function == "Fn::Not":
            return not self.truth(argument[0])
        if function == "Fn::Equals":
            left, right = (self.value(a) for a in argument)
            return bool(left == right)
        if function == "Condition":
            return self.condition(argument)
        raise ValueError(f"cannot evaluate {node!r}")


def _checked(template: dict[str, Any], parameters: dict[str, str]) -> dict[str, str]:
    declared = template.get("Parameters", {})
    if set(parameters) != set(declared):
        raise ValueError(f"SAMPLE_PARAMETERS must name exactly template.yaml's parameters: {sorted(declared)}")
    for name, value in parameters.items():
        pattern = declared[name].get("AllowedPattern")
        if pattern is not None and re.fullmatch(pattern, value) is None:
            raise ValueError(f"the sample {name} {value!r} does not match its AllowedPattern {pattern!r}")
    return parameters


def deployed_functions(artifact: Path, parameters: dict[str, str] = SAMPLE_PARAMETERS) -> list[DeployedFunction]:
    """Every function of template.yaml, with the environment Lambda would give it running from `artifact`."""
    template = _load()
    resolver = _Resolver(template, _checked(template, parameters))
    defaults = template.get("Globals", {}).get("Function", {})
    found = []
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        properties = {**defaults, **resource["Properties"]}
        handler = properties["Handler"]
        match = re.fullmatch(r"(functions/(\w+)/app)\.(\w+)", handler)
        if match is None:
            raise ValueError(f"{logical_id}: handler {handler!r} is not functions/<name>/app.<attribute>")
        variables = {
            **defaults.get("Environment", {}).get("Variables", {}),
            **resource["Properties"].get("Environment", {}).get("Variables", {}),
        }
        environment = {name: resolver.value(node) for name, node in variables.items()}
        environment = {name: value for name, value in environment.items() if value is not _NO_VALUE}
        events = [event["Type"] for event in resource["Properties"].get("Events", {}).values()]
        trigger: Literal["http-api", "function-url", "schedule"] = (
            "http-api" if "HttpApi" in events else "function-url" if "FunctionUrlConfig" in properties else "schedule"
        )
        found.append(
            DeployedFunction(
                name=match.group(2),
                module=match.group(1).replace("/", "."),
                attribute=match.group(3),
                trigger=trigger,
                environment={**_lambda_variables(match.group(2), artifact, properties), **environment},
            )
        )
    return found


def _lambda_variables(name: str, artifact: Path, properties: dict[str, Any]) -> dict[str, str]:
    """What Lambda's Python runtime sets in every container, whatever the template says."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": f"agentpay-{name}",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(properties.get("MemorySize", 128)),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{properties['Runtime']}",
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "LAMBDA_TASK_ROOT": str(artifact),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "PATH": "/usr/local/bin:/usr/bin/:/bin:/opt/bin",
    }
