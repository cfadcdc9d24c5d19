"""Bot feature files learned from an analytics store, guarded before they are published.

For scripts and drills::

    source = open_source("sqlite:analytics.db")        # or chdb:DIR, clickhouse://host/db
    expose_copy(source, "http_requests_features", "r0", Path("r0.db"))  # 2025-11-18's change
    good = generate_feature_file(source, "http_requests_features")
    doubled = generate_feature_file(source, "http_requests_features", database_filter=False)
    check(good.data, capacity=200, previous=None)       # GuardRefused for `doubled`
"""

from failsmall.features.fit import NotEnoughRows, Quality
from failsmall.features.generate import (
    Generated,
    dump_feature_file,
    generate_feature_file,
    write_feature_file,
)
from failsmall.features.guards import Acceptance, GuardRefused, GuardReport, check
from failsmall.features.ingest import ingest_access_log, ingest_generated
from failsmall.features.metadata import SchemaError
from failsmall.features.replay import expose_copy
from failsmall.features.source import Source, SourceError, open_source

__all__ = [
    "Acceptance",
    "Generated",
    "GuardRefused",
    "GuardReport",
    "NotEnoughRows",
    "Quality",
    "SchemaError",
    "Source",
    "SourceError",
    "check",
    "dump_feature_file",
    "expose_copy",
    "generate_feature_file",
    "ingest_access_log",
    "ingest_generated",
    "open_source",
    "write_feature_file",
]
