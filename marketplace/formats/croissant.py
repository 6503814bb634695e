"""Croissant 1.0 JSON-LD metadata, with the Responsible-AI (RAI) vocabulary, from plain data.

No Django: the service gathers the facts (dataset, version, datasheet answers, license, counts,
the files of an export) and these functions shape them. ``mlcroissant`` validates the result
in the tests, offline.

RAI properties use the names of the RAI vocabulary (``docs/croissant_rai.ttl`` in
mlcommons/croissant), which differ in two places from what mlcroissant 1.1 reads:
``rai:dataCollectionTimeframe`` (mlcroissant: ``...TimeFrame``) and
``rai:dataManipulationProtocol`` (mlcroissant: ``dataDataManipulationProtocol``). The
vocabulary wins. The timeframe's range is an ISO 8601 date or interval ("2025-01/2025-09"), so
a datasheet answer in prose goes into ``rai:dataCollection`` instead.

Datasheet question -> RAI property:

=================================================  =================================
datasheet (Datasheets for Datasets)                Croissant RAI
=================================================  =================================
acquisition, setting, collectors, consent          ``rai:dataCollection``
timeframe (ISO 8601)                               ``rai:dataCollectionTimeframe``
missing_information                                ``rai:dataCollectionMissingData``
raw_data                                           ``rai:dataCollectionRawData``
preprocessing                                      ``rai:dataPreprocessingProtocol``
labelling (+ guideline versions and hashes)        ``rai:dataAnnotationProtocol``
annotation_platform                                ``rai:dataAnnotationPlatform``
intended_uses                                      ``rai:dataUseCases``
biases                                             ``rai:dataBiases``
limitations, unsuitable_uses                       ``rai:dataLimitations``
social_impact                                      ``rai:dataSocialImpact``
sensitive_data, subpopulations (+ person attrs)    ``rai:personalSensitiveInformation``
maintainer, update_policy, retention               ``rai:dataReleaseMaintenancePlan``
=================================================  =================================

Computed by the service from the labels: ``rai:annotationsPerItem``,
``rai:dataAnnotationAnalysis`` (candidates and consensus), ``rai:machineAnnotationTools``
(model names and versions of model-made labels) and ``rai:annotatorDemographics`` (only what
annotators declared, aggregated; see :func:`aggregate_demographics`).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

CONFORMS_TO = "http://mlcommons.org/croissant/1.0"

# The standard @context of Croissant 1.0 (mlcroissant warns about any other), with ``rai``.
CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "equivalentProperty": "cr:equivalentProperty",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}

# Demographic cells smaller than this are folded into "other": a count of one names a person.
MIN_CELL = 2
# A demographic attribute is reported only when at least this many annotators declared it.
MIN_DECLARED = 3

_ISO_PERIOD = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?(/\d{4}(-\d{2}(-\d{2})?)?)?$")
SPLIT_URLS = {
    "train": "https://mlcommons.org/definitions/training_split",
    "val": "https://mlcommons.org/definitions/validation_split",
    "test": "https://mlcommons.org/definitions/test_split",
}
MEDIA_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".bmp": "image/bmp",
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".gif": "image/gif",
    ".json": "application/json",
    ".xml": "application/xml",
    ".txt": "text/plain",
    ".md": "text/markdown",
    ".csv": "text/csv",
    ".yaml": "application/yaml",
    ".jsonl": "application/jsonlines",
}


def media_type(name: str) -> str:
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return MEDIA_TYPES.get(suffix, "application/octet-stream")


def _join(parts: Iterable[tuple[str, str]]) -> str:
    return "\n".join(f"{title}: {text.strip()}" for title, text in parts if text and text.strip())


def aggregate_demographics(declared: Iterable[Mapping[str, object]], *, annotators: int) -> list[str]:
    """Annotators' self-declared demographics as counts per attribute, never per person.

    An attribute appears only when at least ``MIN_DECLARED`` annotators declared it; values
    held by fewer than ``MIN_CELL`` annotators are folded into "other". Nothing declared:
    an empty list (and the property is left out).
    """
    per_key: dict[str, Counter] = {}
    for record in declared:
        for key, value in (record or {}).items():
            if value in (None, "", [], {}):
                continue
            per_key.setdefault(str(key), Counter())[str(value)] += 1
    out = []
    for key in sorted(per_key):
        counts = per_key[key]
        total = sum(counts.values())
        if total < MIN_DECLARED:
            continue
        shown = {v: n for v, n in counts.items() if n >= MIN_CELL}
        other = total - sum(shown.values())
        cells = [f"{v} {n}" for v, n in sorted(shown.items(), key=lambda kv: (-kv[1], kv[0]))]
        if other:
            cells.append(f"other {other}")
        out.append(f"{key}: {', '.join(cells)} ({total} of {annotators} annotators declared)")
    return out


def rai_properties(
    *,
    datasheet: Mapping[str, str],
    guideline_versions: Iterable[Mapping[str, str]] = (),
    annotations_per_item: str = "",
    annotation_analysis: str = "",
    machine_annotation_tools: Iterable[str] = (),
    annotator_demographics: Iterable[str] = (),
    person_attributes: Iterable[str] = (),
) -> dict:
    """The ``rai:`` properties of a dataset, from its datasheet and facts computed from its labels."""
    sheet = {k: (v or "").strip() for k, v in datasheet.items()}
    rai: dict = {}

    def put(name: str, value) -> None:
        if value:
            rai[f"rai:{name}"] = value

    timeframe = sheet.get("timeframe", "")
    iso_timeframe = bool(_ISO_PERIOD.match(timeframe))
    put(
        "dataCollection",
        _join(
            [
                ("Acquisition", sheet.get("acquisition", "")),
                ("Timeframe", "" if iso_timeframe else timeframe),
                ("Setting", sheet.get("setting", "")),
                ("Who collected it", sheet.get("collectors", "")),
                ("Consent", sheet.get("consent", "")),
            ]
        ),
    )
    if iso_timeframe:
        put("dataCollectionTimeframe", timeframe)
    put("dataCollectionMissingData", sheet.get("missing_information", ""))
    put("dataCollectionRawData", sheet.get("raw_data", ""))
    put("dataPreprocessingProtocol", sheet.get("preprocessing", ""))
    guidelines = [
        f"{g['guideline']} {g['tag']} (sha256 {g['sha256']})" for g in guideline_versions if g.get("tag")
    ]
    protocol = sheet.get("labelling", "")
    if guidelines:
        protocol = (protocol + "\n" if protocol else "") + "Labelled under: " + "; ".join(guidelines)
    put("dataAnnotationProtocol", protocol)
    put("dataAnnotationPlatform", sheet.get("annotation_platform", ""))
    put("dataAnnotationAnalysis", annotation_analysis)
    put("annotationsPerItem", annotations_per_item)
    put("annotatorDemographics", list(annotator_demographics))
    put("machineAnnotationTools", sorted(set(machine_annotation_tools)))
    put("dataUseCases", sheet.get("intended_uses", ""))
    put("dataBiases", sheet.get("biases", ""))
    limitations = _join(
        [
            ("Known limitations", sheet.get("limitations", "")),
            ("Not suitable for", sheet.get("unsuitable_uses", "")),
        ]
    )
    put("dataLimitations", limitations)
    put("dataSocialImpact", sheet.get("social_impact", ""))
    person = sorted(set(person_attributes))
    put(
        "personalSensitiveInformation",
        _join(
            [
                ("Sensitive data", sheet.get("sensitive_data", "")),
                ("Subpopulations", sheet.get("subpopulations", "")),
                ("Attributes describing people", ", ".join(person)),
            ]
        ),
    )
    put(
        "dataReleaseMaintenancePlan",
        _join(
            [
                ("Updates", sheet.get("update_policy", "")),
                ("Maintainer", sheet.get("maintainer", "")),
                ("Retention", sheet.get("retention", "")),
            ]
        ),
    )
    return rai


def dataset_document(
    *,
    name: str,
    description: str,
    url: str,
    version: str,
    date_published: str | None,
    license: str,
    creator: Mapping[str, str],
    keywords: Iterable[str] = (),
    cite_as: str = "",
    rai: Mapping[str, object] | None = None,
    distribution: list[dict] | None = None,
    record_sets: list[dict] | None = None,
) -> dict:
    """A Croissant ``sc:Dataset`` document."""
    doc: dict = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": name,
        "description": description or name,
        "conformsTo": CONFORMS_TO,
        "url": url,
        "version": version,
        "license": license,
        "creator": {"@type": "sc:Organization", **creator},
        "keywords": list(keywords),
        "citeAs": cite_as or f"{creator.get('name', '')}. {name}, version {version}. {url}",
    }
    if date_published:
        doc["datePublished"] = date_published
    doc.update(rai or {})
    doc["distribution"] = distribution or []
    doc["recordSet"] = record_sets or []
    return doc


# --------------------------------------------------------------------------- record sets


def _field(rs: str, name: str, data_type: str, description: str = "", source: dict | None = None) -> dict:
    f: dict = {"@type": "cr:Field", "@id": f"{rs}/{name}", "name": name, "dataType": data_type}
    if description:
        f["description"] = description
    if source is not None:
        f["source"] = source
    return f


def categories_record_set(categories: Iterable[Mapping[str, object]]) -> dict:
    """The class list, inline: id (the export's), name, supercategory."""
    rs = "categories"
    return {
        "@type": "cr:RecordSet",
        "@id": rs,
        "name": rs,
        "description": "The label categories, with the ids the export uses.",
        "key": {"@id": f"{rs}/id"},
        "field": [
            _field(rs, "id", "sc:Integer"),
            _field(rs, "name", "sc:Text"),
            _field(rs, "supercategory", "sc:Text"),
        ],
        "data": [
            {f"{rs}/id": c["id"], f"{rs}/name": c["name"], f"{rs}/supercategory": c.get("supercategory", "")}
            for c in categories
        ],
    }


def splits_record_set(splits: Iterable[str]) -> dict:
    rs = "splits"
    return {
        "@type": "cr:RecordSet",
        "@id": rs,
        "name": rs,
        "description": "The splits of the version.",
        "key": {"@id": f"{rs}/name"},
        "field": [_field(rs, "name", "sc:Text"), _field(rs, "url", "sc:URL")],
        "data": [
            {f"{rs}/name": s, f"{rs}/url": SPLIT_URLS.get(s, "https://mlcommons.org/definitions/split")}
            for s in splits
        ],
    }


def file_object(name: str, sha256: str, size: int | None = None, *, description: str = "") -> dict:
    entry: dict = {
        "@type": "cr:FileObject",
        "@id": name,
        "name": name,
        "contentUrl": name,
        "encodingFormat": media_type(name),
        "sha256": sha256,
    }
    if size is not None:
        entry["contentSize"] = f"{size} B"
    if description:
        entry["description"] = description
    return entry


def file_set(set_id: str, includes: str | list[str], encoding: str, description: str = "") -> dict:
    entry: dict = {
        "@type": "cr:FileSet",
        "@id": set_id,
        "name": set_id,
        "encodingFormat": encoding,
        "includes": includes,
    }
    if description:
        entry["description"] = description
    return entry


def images_record_set(set_id: str, folder_regex: str) -> dict:
    """Images from a file set: name, content, and split from the folder (``images/<split>/...``)."""
    rs = "images"
    src = {"fileSet": {"@id": set_id}}
    return {
        "@type": "cr:RecordSet",
        "@id": rs,
        "name": rs,
        "field": [
            _field(rs, "file_name", "sc:Text", source={**src, "extract": {"fileProperty": "filename"}}),
            _field(rs, "image", "sc:ImageObject", source={**src, "extract": {"fileProperty": "content"}}),
            _field(
                rs,
                "split",
                "sc:Text",
                source={**src, "extract": {"fileProperty": "fullpath"}, "transform": {"regex": folder_regex}},
            ),
        ],
    }


def coco_record_sets(set_id: str) -> list[dict]:
    """COCO images and annotations, read from the instances files with JSONPath."""
    src = {"fileSet": {"@id": set_id}}

    def jp(path: str) -> dict:
        return {**src, "extract": {"jsonPath": path}}

    images, anns = "coco_images", "coco_annotations"
    return [
        {
            "@type": "cr:RecordSet",
            "@id": images,
            "name": images,
            "description": "The 'images' entries of the COCO files.",
            "field": [
                _field(images, "id", "sc:Integer", source=jp("$.images[*].id")),
                _field(images, "file_name", "sc:Text", source=jp("$.images[*].file_name")),
                _field(images, "width", "sc:Integer", source=jp("$.images[*].width")),
                _field(images, "height", "sc:Integer", source=jp("$.images[*].height")),
            ],
        },
        {
            "@type": "cr:RecordSet",
            "@id": anns,
            "name": anns,
            "description": "The 'annotations' of the COCO files: bbox is [x, y, w, h], 0-based pixels.",
            "field": [
                _field(anns, "id", "sc:Integer", source=jp("$.annotations[*].id")),
                _field(anns, "image_id", "sc:Integer", source=jp("$.annotations[*].image_id")),
                _field(anns, "category_id", "sc:Integer", source=jp("$.annotations[*].category_id")),
                _field(anns, "bbox", "cr:BoundingBox", source=jp("$.annotations[*].bbox")),
                _field(anns, "area", "sc:Float", source=jp("$.annotations[*].area")),
                _field(anns, "iscrowd", "sc:Integer", source=jp("$.annotations[*].iscrowd")),
            ],
        },
    ]


def provenance_record_set(file_id: str, columns: Iterable[str]) -> dict:
    rs = "provenance"
    return {
        "@type": "cr:RecordSet",
        "@id": rs,
        "name": rs,
        "description": "Who made each label, when, under which guideline version, by hand or by which model.",
        "field": [
            _field(rs, c, "sc:Text", source={"fileObject": {"@id": file_id}, "extract": {"column": c}})
            for c in columns
        ],
    }
