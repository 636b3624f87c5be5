"""IAM as data: one role per function/job with an inline policy scoped to the ARNs it needs.

Statements are plain dicts (values may be Outputs) rendered with ``json.dumps``; no heredoc JSON.
Wildcard resources are allowed only where AWS supports no resource-level permission, and each such
statement carries a ``Sid`` starting with ``AwsRequiresWildcard`` (the infra tests enforce both).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

WILDCARD_SID_PREFIX = "AwsRequiresWildcard"


def assume_role_policy(service: str) -> str:
    """Trust policy JSON letting one AWS service (``lambda.amazonaws.com``, ``glue.amazonaws.com``) assume the role."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
        }
    )


def allow(sid: str, actions: Sequence[str], resources: Sequence[pulumi.Input[str]], **extra: Any) -> dict[str, Any]:
    """One Allow statement."""
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": list(resources), **extra}


def policy_json(statements: Sequence[dict[str, Any]]) -> pulumi.Output[str]:
    """Policy document JSON of the statements (Outputs inside are resolved first)."""
    return pulumi.Output.from_input({"Version": "2012-10-17", "Statement": list(statements)}).apply(
        lambda doc: json.dumps(doc, sort_keys=True)
    )


def log_statements(log_group_arn: pulumi.Input[str]) -> list[dict[str, Any]]:
    """Write access to one CloudWatch log group (the function's own)."""
    streams = pulumi.Output.concat(log_group_arn, ":*")
    return [allow("WriteOwnLogs", ["logs:CreateLogStream", "logs:PutLogEvents"], [log_group_arn, streams])]


def xray_statement() -> dict[str, Any]:
    """X-Ray segment upload: the X-Ray write APIs support no resource-level permissions, so "*" is required."""
    return allow(f"{WILDCARD_SID_PREFIX}XRay", ["xray:PutTraceSegments", "xray:PutTelemetryRecords"], ["*"])


def kms_statement(key_arn: pulumi.Input[str], decrypt_only: bool = False) -> dict[str, Any]:
    """Use of the stack key (data keys for Kinesis/SQS/S3 SSE-KMS)."""
    actions = ["kms:Decrypt"] if decrypt_only else ["kms:Decrypt", "kms:GenerateDataKey"]
    return allow("UseStackKey", actions, [key_arn])


def service_role(
    name: str, service: str, statements: Sequence[dict[str, Any]], parent: pulumi.Resource
) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
    """A role assumable by ``service`` with one inline policy of ``statements`` (no managed policies)."""
    role = aws.iam.Role(
        f"{name}-role", assume_role_policy=assume_role_policy(service), opts=pulumi.ResourceOptions(parent=parent)
    )
    policy = aws.iam.RolePolicy(
        f"{name}-policy", role=role.id, policy=policy_json(statements), opts=pulumi.ResourceOptions(parent=parent)
    )
    return role, policy


def deny_insecure_transport(action: str, resources: Sequence[str]) -> str:
    """Resource policy JSON denying every ``action`` request made without TLS (``aws:SecureTransport`` false)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "DenyInsecureTransport",
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": action,
                    "Resource": list(resources),
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                }
            ],
        }
    )
