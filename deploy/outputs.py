"""Names of the stack outputs (``pulumi stack output NAME``); the program exports them, tests and docs use them."""

from __future__ import annotations

API_URL = "api_url"
"""POST endpoint cameras send frames to."""
CAMERA_KEY_IDS = "camera_key_ids"
"""camera_id -> API Gateway key id (read the key value with ``aws apigateway get-api-key --include-value``)."""
LAKE_BUCKET = "lake_bucket"
RESULTS_BUCKET = "athena_results_bucket"
ASSETS_BUCKET = "glue_assets_bucket"
ATHENA_WORKGROUP = "athena_workgroup"
ATHENA_DATABASE = "athena_database"
DASHBOARD_URL = "dashboard_url"
ALARM_TOPIC_ARN = "alarm_topic_arn"
STREAM_NAME = "stream_name"
QUEUE_URL = "box_office_queue_url"
GLUE_JOB_NAME = "glue_job_name"

ALL = (
    API_URL,
    CAMERA_KEY_IDS,
    LAKE_BUCKET,
    RESULTS_BUCKET,
    ASSETS_BUCKET,
    ATHENA_WORKGROUP,
    ATHENA_DATABASE,
    DASHBOARD_URL,
    ALARM_TOPIC_ARN,
    STREAM_NAME,
    QUEUE_URL,
    GLUE_JOB_NAME,
)
