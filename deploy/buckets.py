"""SecureBucket: an S3 bucket that is private, KMS-encrypted, TLS-only and owner-enforced by construction.

Every bucket of the stack is one of these, so the security baseline cannot be forgotten on one of them:
public access block (all four switches), ``BucketOwnerEnforced`` (ACLs disabled), default SSE-KMS with
an S3 bucket key, a bucket policy denying any request without TLS, and lifecycle rules (always: abort
incomplete multipart uploads after 7 days).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from deploy.iam import deny_insecure_transport


@dataclass(frozen=True)
class LifecycleRule:
    """Expire and/or tier objects under ``prefix`` ("" = whole bucket); days 0 = not applied."""

    id: str
    prefix: str = ""
    expiration_days: int = 0
    infrequent_access_days: int = 0


@dataclass
class SecureBucketArgs:
    kms_key_arn: pulumi.Input[str]
    lifecycle: list[LifecycleRule] = field(default_factory=list)
    versioning: bool = False
    retain_on_delete: bool = False
    """Keep the bucket (and its data) when the stack is destroyed."""
    force_destroy: bool = False
    """Let ``pulumi destroy`` empty the bucket (only for buckets holding disposable data)."""


def tls_only_policy(bucket_arn: str) -> str:
    """Bucket policy JSON denying every request made without TLS (``aws:SecureTransport`` false)."""
    return deny_insecure_transport("s3:*", [bucket_arn, f"{bucket_arn}/*"])


class SecureBucket(pulumi.ComponentResource):
    """A private, encrypted, TLS-only S3 bucket with lifecycle rules."""

    bucket: aws.s3.Bucket
    name: pulumi.Output[str]
    arn: pulumi.Output[str]

    def __init__(self, name: str, args: SecureBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("monuv:deploy:SecureBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.bucket = aws.s3.Bucket(
            name,
            force_destroy=args.force_destroy,
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=args.retain_on_delete),
        )
        self.name = self.bucket.bucket
        self.arn = self.bucket.arn
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=self.bucket.id, rule={"object_ownership": "BucketOwnerEnforced"}, opts=child
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[
                {
                    "apply_server_side_encryption_by_default": {
                        "sse_algorithm": "aws:kms",
                        "kms_master_key_id": args.kms_key_arn,
                    },
                    "bucket_key_enabled": True,  # one KMS call per object batch, not per object: cheaper
                }
            ],
            opts=child,
        )
        if args.versioning:
            aws.s3.BucketVersioning(
                f"{name}-versioning", bucket=self.bucket.id, versioning_configuration={"status": "Enabled"}, opts=child
            )
        aws.s3.BucketPolicy(
            f"{name}-tls-only", bucket=self.bucket.id, policy=self.arn.apply(tls_only_policy), opts=child
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=self.bucket.id, rules=_lifecycle_rules(args.lifecycle), opts=child
        )
        self.register_outputs({"name": self.name, "arn": self.arn})


def _lifecycle_rules(rules: list[LifecycleRule]) -> list[dict]:
    out: list[dict] = [
        {
            "id": "abort-incomplete-uploads",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "abort_incomplete_multipart_upload": {"days_after_initiation": 7},
        }
    ]
    for rule in rules:
        entry: dict = {"id": rule.id, "status": "Enabled", "filter": {"prefix": rule.prefix}}
        if rule.expiration_days:
            entry["expiration"] = {"days": rule.expiration_days}
        if rule.infrequent_access_days:
            entry["transitions"] = [{"days": rule.infrequent_access_days, "storage_class": "STANDARD_IA"}]
        if "expiration" in entry or "transitions" in entry:
            out.append(entry)
    return out
