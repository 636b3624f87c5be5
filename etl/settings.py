"""Names of the Glue job arguments (``--NAME value``), shared by ``etl/job.py`` (reads them with
``getResolvedOptions``) and ``etl/infra.py`` (sets them in the job's default arguments)."""

from __future__ import annotations

STREAM_ARN = "stream_arn"
"""Kinesis stream to read."""
LAKE_PATH = "lake_path"
"""s3://bucket/prefix under which the tables' directories (reads/, frames/, box_office/) live."""
QUARANTINE_PATH = "quarantine_path"
"""s3://bucket/prefix for records that fail validation, with the reason."""
CHECKPOINT_PATH = "checkpoint_path"
"""s3://bucket/prefix of the streaming checkpoint."""
WINDOW_SECONDS = "window_seconds"
"""Micro-batch window."""
STARTING_POSITION = "starting_position"
"""TRIM_HORIZON (default) or LATEST, used only when no checkpoint exists yet."""

GLUE_VERSION = "5.0"
"""Glue runtime of the streaming job (Spark 3.5.4, Python 3.11, Java 17)."""

KINESIS_CONNECTOR_JAR = "spark-streaming-sql-kinesis-connector_2.12-1.4.0.jar"
"""File name of the connector jar that ``etl/infra.py`` uploads and passes with ``--extra-jars``
(Maven ``org.apache.spark:spark-streaming-sql-kinesis-connector_2.12:1.4.0``, built against Spark 3.5.1;
the Scala 2.12 build must be used on Glue 5.0 -- unverified without AWS)."""

JOB_ARGUMENTS = (STREAM_ARN, LAKE_PATH, QUARANTINE_PATH, CHECKPOINT_PATH, WINDOW_SECONDS, STARTING_POSITION)
