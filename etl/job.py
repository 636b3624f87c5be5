"""Glue streaming job entry point -- the only module that imports ``awsglue`` (lazily, in :func:`main`).

Route chosen for KPL de-aggregation (see docs/etl.md, "De-aggregation"): the stream is read with
AWS's open-source Spark Structured Streaming connector ``awslabs/spark-sql-kinesis-connector``
(``format("aws-kinesis")``, jar passed with ``--extra-jars``), not with Glue's built-in ``kinesis``
source.  The built-in source parses records by ``classification`` (json/csv/avro...) and no Glue
document describes KPL de-aggregation or a raw-bytes mode, so an aggregated entry would be garbage to
it.  The connector yields the raw ``data`` bytes (and de-aggregates KPL itself, ``RecordBatch.scala``);
our batch function de-aggregates again with ``stream.aggregate``, which is a no-op on plain records,
so the job is correct whichever way the connector behaves.  ``GlueContext.forEachBatch`` accepts any
streaming DataFrame (it calls ``frame.writeStream.foreachBatch``), so the Glue trigger, checkpoint
and retry handling are kept.

Glue version 5.0 (Spark 3.5.4, Python 3.11, Java 17, Scala 2.12): it matches the pyspark 3.5 the
tests run on and the connector's Spark 3.5 build.  Unverified without AWS: see docs/etl.md.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Sequence
from functools import partial

from etl import settings

log = logging.getLogger(__name__)

JOB_DEFAULTS = {
    settings.WINDOW_SECONDS: "60",
    settings.STARTING_POSITION: "TRIM_HORIZON",
}


class JobConfigError(ValueError):
    """A Glue job argument is missing or malformed; the message names it."""


def parse_stream_arn(arn: str) -> tuple[str, str]:
    """(region, stream name) of a Kinesis stream ARN ``arn:aws:kinesis:<region>:<acct>:stream/<name>``.

    Raises:
        JobConfigError: not a Kinesis stream ARN.
    """
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "kinesis" or not parts[5].startswith("stream/"):
        raise JobConfigError(f"--{settings.STREAM_ARN} must be a Kinesis stream ARN, got {arn!r}")
    return parts[3], parts[5][len("stream/") :]


def source_options(args: dict[str, str]) -> dict[str, str]:
    """Options of the ``aws-kinesis`` streaming source for the job arguments."""
    region, name = parse_stream_arn(args[settings.STREAM_ARN])
    position = args.get(settings.STARTING_POSITION) or JOB_DEFAULTS[settings.STARTING_POSITION]
    if position not in ("TRIM_HORIZON", "LATEST"):
        raise JobConfigError(f"--{settings.STARTING_POSITION} must be TRIM_HORIZON or LATEST, got {position!r}")
    return {
        "kinesis.region": region,
        "kinesis.streamName": name,
        "kinesis.endpointUrl": f"https://kinesis.{region}.amazonaws.com",
        "kinesis.consumerType": "GetRecords",
        "kinesis.startingPosition": position,
    }


def batch_options(args: dict[str, str]) -> dict[str, str]:
    """``GlueContext.forEachBatch`` options: trigger window and checkpoint location."""
    raw = args.get(settings.WINDOW_SECONDS) or JOB_DEFAULTS[settings.WINDOW_SECONDS]
    try:
        window = int(raw)
    except ValueError:
        raise JobConfigError(f"--{settings.WINDOW_SECONDS} must be an integer number of seconds, got {raw!r}") from None
    if window < 1:
        raise JobConfigError(f"--{settings.WINDOW_SECONDS} must be >= 1, got {window}")
    checkpoint = args[settings.CHECKPOINT_PATH]
    if not checkpoint:
        raise JobConfigError(f"--{settings.CHECKPOINT_PATH} is empty")
    return {"windowSize": f"{window} seconds", "checkpointLocation": checkpoint, "batchMaxRetries": "3"}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the streaming job until it is stopped (Glue calls this script with ``--KEY value`` arguments)."""
    from awsglue.context import GlueContext
    from awsglue.job import Job
    from awsglue.utils import getResolvedOptions
    from pyspark.context import SparkContext

    from etl.batch import write_batch

    logging.basicConfig(level=logging.INFO, format='{"level":"%(levelname)s","logger":"%(name)s","msg":%(message)r}')
    argv = list(sys.argv if argv is None else argv)
    args = getResolvedOptions(argv, ["JOB_NAME", *settings.JOB_ARGUMENTS])
    glue = GlueContext(SparkContext.getOrCreate())
    job = Job(glue)
    job.init(args["JOB_NAME"], args)
    options = source_options(args)
    log.info("starting: %s", json.dumps({"source": options, "lake": args[settings.LAKE_PATH]}))
    source = glue.spark_session.readStream.format("aws-kinesis").options(**options).load()
    glue.forEachBatch(
        frame=source,
        batch_function=partial(
            write_batch, lake_path=args[settings.LAKE_PATH], quarantine_path=args[settings.QUARANTINE_PATH]
        ),
        options=batch_options(args),
    )
    job.commit()


if __name__ == "__main__":
    main()
