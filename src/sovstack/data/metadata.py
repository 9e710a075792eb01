"""Catalogue metadata out: DCAT-AP (for harvesting by other portals) and Croissant (for ML tools), as JSON-LD."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from sovstack.core.languages import eu_language
from sovstack.data.tables import Dataset, DatasetVersion

PARQUET = "application/vnd.apache.parquet"
# DCAT-AP wants media types and formats as IRIs of their registers (IANA; the EU file-type authority table).
PARQUET_MEDIA_TYPE = "https://www.iana.org/assignments/media-types/application/vnd.apache.parquet"
PARQUET_FILE_TYPE = "http://publications.europa.eu/resource/authority/file-type/PARQUET"
ACCESS_RIGHTS = {  # the EU access-right authority table, as DCAT-AP expects
    "open": "http://publications.europa.eu/resource/authority/access-right/PUBLIC",
    "restricted": "http://publications.europa.eu/resource/authority/access-right/RESTRICTED",
    "sensitive": "http://publications.europa.eu/resource/authority/access-right/NON_PUBLIC",
}
DCAT_CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#", "dct": "http://purl.org/dc/terms/", "foaf": "http://xmlns.com/foaf/0.1/",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#", "spdx": "http://spdx.org/rdf/terms#",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
}
CROISSANT_CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/", "rai": "http://mlcommons.org/croissant/RAI/",
    "dct": "http://purl.org/dc/terms/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract", "field": "cr:field", "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet", "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField", "path": "cr:path",
    "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex", "repeated": "cr:repeated",
    "replace": "cr:replace", "samplingRate": "cr:samplingRate", "separator": "cr:separator", "source": "cr:source",
    "subField": "cr:subField", "transform": "cr:transform",
}


def licence_url(licence: str) -> str:
    return f"https://spdx.org/licenses/{licence}.html"


def _current(dataset: Dataset) -> DatasetVersion | None:
    return next((v for v in dataset.versions if v.number == dataset.current_version), None)


def dataset_url(base: str, dataset: Dataset) -> str:
    return f"{base}/api/v1/data/datasets/{dataset.name}"


def _typed(iri: str, type_: str) -> dict[str, str]:
    """A reference to ``iri`` that also says its class, as DCAT-AP's shapes check (no vocabulary is fetched)."""
    return {"@id": iri, "@type": type_}


def _languages(tags: list[str]) -> list[dict[str, str]]:
    iris = dict.fromkeys(iri for iri in map(eu_language, tags) if iri)
    return [_typed(iri, "dct:LinguisticSystem") for iri in iris]


def dcat_dataset(dataset: Dataset, base: str) -> dict[str, Any]:
    """One dcat:Dataset; its distribution is the current Parquet version (a download only where policy allows)."""
    url = dataset_url(base, dataset)
    licence = _typed(licence_url(dataset.licence), "dct:LicenseDocument")
    node: dict[str, Any] = {
        "@id": url, "@type": "dcat:Dataset", "dct:identifier": dataset.name, "dct:title": dataset.title,
        "dct:description": dataset.description,
        "dct:publisher": {"@type": "foaf:Agent", "foaf:name": dataset.publisher.name},
        "dct:license": licence,
        "dct:accessRights": _typed(ACCESS_RIGHTS[dataset.classification], "dct:RightsStatement"),
        "dct:language": _languages(list(dataset.languages)), "dcat:keyword": list(dataset.keywords),
        "dct:issued": {"@value": dataset.created_at.date().isoformat(), "@type": "xsd:date"},
        "dct:modified": {"@value": dataset.updated_at.date().isoformat(), "@type": "xsd:date"},
    }
    if dataset.spatial:
        node["dct:spatial"] = {"@type": "dct:Location", "rdfs:label": dataset.spatial}
    if dataset.temporal_start or dataset.temporal_end:
        node["dct:temporal"] = {"@type": "dct:PeriodOfTime", **(
            {"dcat:startDate": {"@value": dataset.temporal_start.isoformat(), "@type": "xsd:date"}}
            if dataset.temporal_start else {}), **(
            {"dcat:endDate": {"@value": dataset.temporal_end.isoformat(), "@type": "xsd:date"}}
            if dataset.temporal_end else {})}
    if dataset.provenance:
        node["dct:provenance"] = {"@type": "dct:ProvenanceStatement", "rdfs:label": dataset.provenance}
    version = _current(dataset)
    if version is not None:
        dist: dict[str, Any] = {
            "@type": "dcat:Distribution", "dct:title": f"{dataset.name} version {version.number} (Parquet)",
            "dcat:accessURL": {"@id": url}, "dcat:mediaType": _typed(PARQUET_MEDIA_TYPE, "dct:MediaType"),
            "dct:format": _typed(PARQUET_FILE_TYPE, "dct:MediaTypeOrExtent"),
            "dcat:byteSize": {"@value": str(version.parquet_bytes), "@type": "xsd:nonNegativeInteger"},
            "dct:license": licence,
            "spdx:checksum": {"@type": "spdx:Checksum",
                              "spdx:algorithm": _typed("spdx:checksumAlgorithm_sha256", "spdx:ChecksumAlgorithm"),
                              "spdx:checksumValue": {"@value": version.sha256, "@type": "xsd:hexBinary"}}}
        if dataset.classification != "sensitive":  # sensitive data has no download, ever
            dist["dcat:downloadURL"] = {"@id": f"{url}/download?version={version.number}"}
        node["dcat:distribution"] = [dist]
    return node


def dcat(dataset: Dataset, base: str) -> dict[str, Any]:
    return {"@context": DCAT_CONTEXT, **dcat_dataset(dataset, base)}


def dcat_catalogue(datasets: list[Dataset], base: str, deployment: str) -> dict[str, Any]:
    """The catalogue as a dcat:Catalog published by the deployment's operator, with each dataset in it."""
    return {"@context": DCAT_CONTEXT, "@id": f"{base}/api/v1/data/catalogue.jsonld", "@type": "dcat:Catalog",
            "dct:title": f"{deployment} data commons",
            "dct:description": f"The datasets published on the {deployment} data commons, with their access "
                               "rights, licences and current versions.",
            "dct:publisher": {"@type": "foaf:Agent", "foaf:name": deployment},
            "dcat:dataset": [dcat_dataset(d, base) for d in datasets]}


_INTEGERS = {"TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
             "UHUGEINT"}
_SCALARS = {"BOOLEAN": "sc:Boolean", "FLOAT": "sc:Float", "DOUBLE": "sc:Float", "DATE": "sc:Date",
            "TIME": "sc:Time", "TIME WITH TIME ZONE": "sc:Time", "TIMESTAMP": "sc:DateTime",
            "TIMESTAMP WITH TIME ZONE": "sc:DateTime", "TIMESTAMP_S": "sc:DateTime", "TIMESTAMP_MS": "sc:DateTime",
            "TIMESTAMP_NS": "sc:DateTime", **dict.fromkeys(_INTEGERS, "sc:Integer")}


def _cr_scalar(duckdb_type: str) -> str:
    """The schema.org type of a DuckDB scalar type (text for those it has none for: UUID, BLOB, INTERVAL…)."""
    upper = duckdb_type.strip().upper()
    return "sc:Float" if upper.startswith("DECIMAL") else _SCALARS.get(upper, "sc:Text")


def _split(text: str) -> list[str]:
    """``text`` split at the commas outside parentheses and double quotes (DuckDB's nested type syntax)."""
    parts, depth, quoted, start = [], 0, False, 0
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted  # a doubled quote toggles twice
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        elif not quoted and depth == 0 and char == ",":
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]


def _member(text: str) -> tuple[str, str]:
    """A STRUCT member ``name TYPE`` (the name possibly double-quoted) as (name, type)."""
    if text.startswith('"'):
        end = 1
        while end < len(text) and (text[end] != '"' or text[end + 1:end + 2] == '"'):
            end += 2 if text[end] == '"' else 1
        return text[1:end].replace('""', '"'), text[end + 1:].strip()
    name, _, type_ = text.partition(" ")
    return name, type_.strip()


def _step(member: str) -> str:
    plain = member.isidentifier()
    return f".{member}" if plain else "['" + member.replace("\\", "\\\\").replace("'", "\\'") + "']"


def _cr_field(field_id: str, name: str, duckdb_type: str, source: dict[str, Any], path: str = "$") -> dict[str, Any]:
    """A Croissant 1.0 field for a column of ``duckdb_type``: lists are ``repeated``, structs and maps have a
    ``subField`` per member (maps: key and value), each taken from the column by its JSON ``path``."""
    field: dict[str, Any] = {"@type": "cr:Field", "@id": field_id, "name": name}
    type_ = duckdb_type.strip()
    if type_.endswith("]"):  # LIST (T[]) or ARRAY (T[n]) of the type before the brackets
        inner = _cr_field(field_id, name, type_[:type_.rindex("[")], source, f"{path}[*]")
        if inner.get("repeated"):  # a list of lists: each element is itself a repeated field
            return {**field, "repeated": True, "subField": [{**inner, "@id": f"{field_id}/element",
                                                             "name": "element"}]}
        return {**inner, "repeated": True}
    upper = type_.upper()
    members: list[tuple[str, str]] = []
    if upper.startswith("STRUCT(") and type_.endswith(")"):
        members = [_member(part) for part in _split(type_[len("STRUCT("):-1])]
    elif upper.startswith("MAP(") and type_.endswith(")"):
        key, value = _split(type_[len("MAP("):-1])
        members, field["repeated"], path = [("key", key), ("value", value)], True, f"{path}[*]"
    if members:
        field["subField"] = [_cr_field(f"{field_id}/{quote(member, safe='')}", member, member_type, source,
                                       path + _step(member))
                             for member, member_type in members]
        return field
    within = path.replace("[*]", "") != "$"  # a member of a struct, not the column's own values
    return {**field, "dataType": _cr_scalar(type_),
            "source": {**source, "transform": {"jsonPath": path}} if within else source}


def croissant(dataset: Dataset, base: str) -> dict[str, Any]:
    """The dataset as Croissant 1.0: its metadata, the current Parquet file and one record set of its columns."""
    url = dataset_url(base, dataset)
    doc: dict[str, Any] = {
        "@context": CROISSANT_CONTEXT, "@type": "sc:Dataset", "name": dataset.name,
        "description": dataset.description or dataset.title, "conformsTo": "http://mlcommons.org/croissant/1.0",
        "license": licence_url(dataset.licence), "url": url, "version": f"{max(dataset.current_version, 1)}.0.0",
        "datePublished": dataset.created_at.date().isoformat(), "keywords": list(dataset.keywords),
        "inLanguage": list(dataset.languages),
        "publisher": {"@type": "sc:Organization", "name": dataset.publisher.name},
        "creator": {"@type": "sc:Organization", "name": dataset.publisher.name},
    }
    version = _current(dataset)
    if version is None:
        return doc
    file_id = f"{dataset.name}-v{version.number}.parquet"
    content = f"{url}/download?version={version.number}" if dataset.classification != "sensitive" else url
    doc["distribution"] = [{"@type": "cr:FileObject", "@id": file_id, "name": file_id, "contentUrl": content,
                            "encodingFormat": "application/x-parquet", "sha256": version.sha256}]
    doc["recordSet"] = [{"@type": "cr:RecordSet", "@id": dataset.name, "name": dataset.name, "field": [
        {**_cr_field(f"{dataset.name}/{quote(c['name'], safe='')}", c["name"], c["type"],
                     {"fileObject": {"@id": file_id}, "extract": {"column": c["name"]}}),
         **({"description": c["description"]} if c.get("description") else {})}
        for c in version.columns]}]
    return doc
