"""StackKey: the customer-managed KMS key that encrypts the stack's data at rest.

One key for Kinesis, SQS, S3, Secrets Manager, the SNS alarm topic and Athena results: one place to
audit, rotate (yearly, automatic) and revoke.  Its key policy delegates to IAM (the account root
statement AWS requires) and lets CloudWatch alarms and EventBridge publish to the encrypted topic.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class StackKeyArgs:
    account_id: pulumi.Input[str]
    description: str


def key_policy(account_id: str) -> str:
    """Key policy JSON: IAM delegation for the account, SNS-publish use for CloudWatch and EventBridge."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # The default key policy AWS requires so IAM policies can grant use of the key; without it
                    # the key becomes unmanageable. In a key policy "Resource": "*" means "this key".
                    "Sid": "EnableIamPolicies",
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{account_id}:root"},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    # Alarms (cloudwatch) and the Glue state rule (events) publish to the KMS-encrypted SNS topic.
                    "Sid": "AllowAlarmPublishersToUseKey",
                    "Effect": "Allow",
                    "Principal": {"Service": ["cloudwatch.amazonaws.com", "events.amazonaws.com"]},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",  # "this key" (key policies allow no other value)
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                },
            ],
        }
    )


class StackKey(pulumi.ComponentResource):
    """Customer-managed KMS key with yearly rotation and an alias."""

    key: aws.kms.Key
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: StackKeyArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("monuv:deploy:StackKey", name, None, opts)
        self.key = aws.kms.Key(
            name,
            description=args.description,
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.from_input(args.account_id).apply(key_policy),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.kms.Alias(
            f"{name}-alias",
            name=f"alias/{name}",
            target_key_id=self.key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.arn = self.key.arn
        self.register_outputs({"arn": self.arn})
