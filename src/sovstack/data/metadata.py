"""Catalogue metadata out: DCAT-AP (for harvesting by other portals) and Croissant (for ML tools), as JSON-LD."""

from __future__ import annotations

from typing import Any

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


_CR_TYPES = (("BOOL", "sc:Boolean"), ("INT", "sc:Integer"), ("DOUBLE", "sc:Float"), ("FLOAT", "sc:Float"),
             ("DECIMAL", "sc:Float"), ("TIMESTAMP", "sc:DateTime"), ("DATE", "sc:Date"))


def _cr_type(duckdb_type: str) -> str:
    upper = duckdb_type.upper()
    return next((cr for prefix, cr in _CR_TYPES if prefix in upper), "sc:Text")


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
        {"@type": "cr:Field", "@id": f"{dataset.name}/{c['name']}", "name": c["name"],
         **({"description": c["description"]} if c.get("description") else {}), "dataType": _cr_type(c["type"]),
         "source": {"fileObject": {"@id": file_id}, "extract": {"column": c["name"]}}}
        for c in version.columns]}]
    return doc
