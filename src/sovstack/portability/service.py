"""Whole-deployment export and import: what the CLI (and later the API) call.

    export_deployment(db, metadata, out, …)  → a BagIt bag (folder or .tar) of every table, object,
                                               the settings and, if asked, the credentials sealed
    import_deployment(db, metadata, bag, …)  → that bag loaded into an empty deployment, all or nothing

Both are driven by the SQLAlchemy metadata of the installed modules (``Base.metadata``), never by a
list of tables: a module added later is carried without edits here. The format is in
docs/export-format.md.
"""

from __future__ import annotations

from sovstack.portability.carried import (
    FORMAT_VERSION,
    ExportResult,
    ImportResult,
    Progress,
    Quiet,
    RowFilter,
    SecretsMode,
)
from sovstack.portability.exporter import export_deployment
from sovstack.portability.importer import import_deployment

__all__ = ["FORMAT_VERSION", "ExportResult", "ImportResult", "Progress", "Quiet", "RowFilter", "SecretsMode",
           "export_deployment", "import_deployment"]
