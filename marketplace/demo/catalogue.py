"""What the demo catalogue holds: datasheets, schemas, offers and versions per dataset."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from ..formats import model as fmt
from .drawing import PERSON_FLIP_IDX, PERSON_KEYPOINTS, PERSON_SKELETON, draw_bridge, draw_people, draw_street

# --------------------------------------------------------------------------- writing it down


DATASHEETS = {
    "urban-street-scenes": {
        "purpose": "Training and evaluating object detection, drivable-area segmentation and lane detection for urban driving assistance in European cities.",
        "creators": "Northwind Vision's street-data team, for its own catalogue.",
        "funding": "Self-funded by Northwind Vision.",
        "instances": "Each instance is one 640x400 front-camera frame with cars, pedestrians, cyclists, traffic lights, the road surface (mask) and lane markings (polylines).",
        "sampling": "Frames sampled every 30 s from drives in four countries, balanced across time of day; the demo frames are rendered stand-ins.",
        "subpopulations": "Pedestrians are not described by any demographic attribute.",
        "sensitive_data": "Faces and licence plates are blurred at capture; no personal attributes are labelled.",
        "missing_information": "Traffic-light state is missing when the light faces away from the camera.",
        "recommended_splits": "train/val/test by drive, so that no drive spans two splits.",
        "acquisition": "Roof-mounted camera, 30 fps, frames sampled every 30 s.",
        "timeframe": "January to September 2025.",
        "setting": "Urban streets in NL, DE, FR and BE; daytime, dry weather.",
        "collectors": "Two employed drivers; annotators paid per hour above the local living wage.",
        "consent": "Public-space recording under the legitimate-interest basis with on-vehicle notices; faces blurred.",
        "preprocessing": "Face and licence-plate blurring; frames with motion blur above threshold removed.",
        "labelling": "Each frame labelled by one annotator under the guideline, reviewed by a second; lane markings pre-labelled by a model and corrected.",
        "annotation_platform": "CVAT 2.x, exported as CVAT for images 1.1.",
        "raw_data": "Raw video kept encrypted for 24 months; not distributed.",
        "intended_uses": "Detection, segmentation and lane detection research and product development.",
        "unsuitable_uses": "Identifying or tracking individuals; night-time or adverse-weather driving without additional data.",
        "biases": "Only daytime and dry weather; four Western European countries.",
        "limitations": "No night, rain or snow; few cyclists.",
        "social_impact": "Improved vulnerable-road-user detection; risk of over-trusting a model outside its conditions.",
        "distribution": "Through this registry under CC-BY-4.0.",
        "maintainer": "data@northwind.example",
        "update_policy": "Quarterly releases; labelling errors reported by buyers are fixed in the next version.",
        "retention": "No limit for the released frames.",
    },
    "pedestrian-poses": {
        "purpose": "Human pose estimation for robot navigation among pedestrians, with demographic attributes so that performance can be checked across groups.",
        "creators": "Northwind Vision's people-data team.",
        "instances": "512x384 plaza scenes; each person has 17 COCO keypoints, a box, an age band and a skin-tone group.",
        "subpopulations": "Yes: age band (child, adult, senior) and skin-tone group (light, medium, dark), labelled for bias measurement only.",
        "sensitive_data": "Skin tone and apparent age are special-category adjacent; they are kept pseudonymous and only reported in aggregate.",
        "recommended_splits": "train/val by camera.",
        "acquisition": "Fixed cameras in public plazas with posted notices.",
        "timeframe": "March to June 2026.",
        "setting": "Pedestrian plazas in northern, southern and western Europe.",
        "collectors": "Contracted annotation vendor; three independent annotators per image, consensus by a reviewer.",
        "labelling": "Three annotators label every person independently; keypoints are fused and attributes decided by majority vote.",
        "annotation_platform": "Label Studio 1.x.",
        "intended_uses": "Pose estimation; fairness evaluation across age and skin tone.",
        "unsuitable_uses": "Inferring identity, ethnicity or age of real individuals.",
        "biases": "Seniors and the medium skin-tone group are under-represented relative to the declared target distribution, and no senior with a dark skin tone appears; see the balance report.",
        "distribution": "By request: research license, reviewed by the supplier.",
        "maintainer": "people-data@northwind.example",
    },
    "bridge-inspection": {
        "purpose": "Automating visual bridge inspection: defect detection and overall condition rating.",
        "creators": "Northwind Vision with a civil-engineering partner.",
        "instances": "640x480 soffit images with crack polylines, spalling and corrosion boxes, bearing cuboids (2D projection and 3D pose) and an image-level condition.",
        "subpopulations": "No people.",
        "acquisition": "Drone imagery at 2-4 m distance; the demo frames are rendered stand-ins.",
        "setting": "Concrete highway bridges.",
        "labelling": "Defects by certified bridge inspectors; bearing 3D poses estimated by a model and checked.",
        "annotation_platform": "CVAT 2.x.",
        "intended_uses": "Defect detection and condition classification.",
        "limitations": "Concrete only; no steel structures.",
        "distribution": "Commercial license, per organisation.",
        "maintainer": "infra@northwind.example",
        "update_policy": "Yearly.",
    },
}


@dataclass
class Spec:
    slug: str
    title: str
    summary: str
    domain: str
    task_types: list[str]
    tags: list[str]
    categories: list[dict]
    attributes: list[dict]
    guideline: str
    guideline_versions: list[tuple[str, date, str]]
    drawer: object
    versions: list[int]  # images per released version (cumulative)
    draft_extra: int = 0
    annotators: list[str] = field(default_factory=list)
    candidates: bool = False


PALETTE = [
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#9a6324",
    "#469990",
    "#808000",
]

SPECS = [
    Spec(
        slug="urban-street-scenes",
        title="Urban Street Scenes — Western Europe, daytime",
        summary="Front-camera frames from four European countries with vehicles, vulnerable road users, drivable area masks and lane markings.",
        domain="autonomous-driving",
        task_types=["detection", "segmentation", "lane-detection"],
        tags=["street", "adas", "lanes", "europe"],
        categories=[
            {
                "name": "car",
                "source_id": 1,
                "supercategory": "vehicle",
                "geometry_types": [fmt.BBOX, fmt.POLYGON],
            },
            {"name": "pedestrian", "source_id": 2, "supercategory": "person", "geometry_types": [fmt.BBOX]},
            {"name": "cyclist", "source_id": 3, "supercategory": "person", "geometry_types": [fmt.BBOX]},
            {
                "name": "traffic_light",
                "source_id": 4,
                "supercategory": "infrastructure",
                "geometry_types": [fmt.BBOX],
            },
            {"name": "road", "source_id": 5, "supercategory": "surface", "geometry_types": [fmt.MASK]},
            {
                "name": "lane_marking",
                "source_id": 6,
                "supercategory": "surface",
                "geometry_types": [fmt.POLYLINE],
            },
        ],
        attributes=[
            {"name": "occluded", "type": "boolean"},
            {
                "name": "state",
                "type": "choice",
                "allowed_values": ["red", "amber", "green"],
                "categories": ["traffic_light"],
            },
            {
                "name": "style",
                "type": "choice",
                "allowed_values": ["solid", "dashed"],
                "categories": ["lane_marking"],
            },
            {
                "name": "time_of_day",
                "type": "choice",
                "scope": "item",
                "allowed_values": ["morning", "noon", "afternoon"],
            },
            {
                "name": "weather",
                "type": "choice",
                "scope": "item",
                "allowed_values": ["clear", "overcast", "rain"],
            },
            {
                "name": "country",
                "type": "choice",
                "scope": "item",
                "allowed_values": ["NL", "DE", "FR", "BE"],
            },
        ],
        guideline="Street scene labelling guideline",
        guideline_versions=[
            ("v1.0", date(2026, 1, 10), "First release."),
            ("v1.1", date(2026, 3, 1), "Lane markings drawn through occlusions."),
            ("v1.2", date(2026, 6, 1), "Cyclist boxes include the bicycle."),
        ],
        drawer=draw_street,
        versions=[16, 24],
        draft_extra=4,
        annotators=["A-11", "A-17", "R-3"],
    ),
    Spec(
        slug="pedestrian-poses",
        title="Pedestrian Poses with Demographic Attributes",
        summary="People in public plazas with 17 COCO keypoints, boxes, age band and skin-tone group, each labelled by three independent annotators.",
        domain="robotics",
        task_types=["keypoints", "detection"],
        tags=["people", "pose", "fairness", "keypoints"],
        categories=[
            {
                "name": "person",
                "source_id": 1,
                "supercategory": "person",
                "geometry_types": [fmt.KEYPOINTS, fmt.BBOX],
                "keypoint_names": PERSON_KEYPOINTS,
                "skeleton": PERSON_SKELETON,
                "flip_idx": PERSON_FLIP_IDX,
            },
        ],
        attributes=[
            {
                "name": "age_band",
                "type": "choice",
                "allowed_values": ["child", "adult", "senior"],
                "describes_person": True,
                "target_distribution": {"child": 0.2, "adult": 0.55, "senior": 0.25},
            },
            {
                "name": "skin_tone",
                "type": "choice",
                "allowed_values": ["light", "medium", "dark"],
                "describes_person": True,
                "target_distribution": {"light": 0.34, "medium": 0.33, "dark": 0.33},
            },
            {
                "name": "region",
                "type": "choice",
                "scope": "item",
                "allowed_values": ["EU-North", "EU-South", "EU-West"],
            },
        ],
        guideline="Pose and attribute guideline",
        guideline_versions=[
            ("v1.0", date(2026, 2, 1), "First release."),
            ("v1.1", date(2026, 4, 15), "Skin-tone groups defined against the Monk scale swatches."),
        ],
        drawer=draw_people,
        versions=[20],
        annotators=["A-21", "A-22", "A-23"],
        candidates=True,
    ),
    Spec(
        slug="bridge-inspection",
        title="Bridge Inspection — Concrete Soffits",
        summary="Drone images of concrete bridge soffits with cracks, spalling, corrosion, bearing cuboids in 2D and 3D, and a condition rating per image.",
        domain="infrastructure",
        task_types=["classification", "detection", "3d-detection"],
        tags=["inspection", "civil-engineering", "defects", "drone"],
        categories=[
            {
                "name": "crack",
                "source_id": 1,
                "supercategory": "defect",
                "geometry_types": [fmt.POLYLINE, fmt.BBOX],
            },
            {"name": "spalling", "source_id": 2, "supercategory": "defect", "geometry_types": [fmt.BBOX]},
            {"name": "corrosion", "source_id": 3, "supercategory": "defect", "geometry_types": [fmt.BBOX]},
            {
                "name": "bearing",
                "source_id": 4,
                "supercategory": "component",
                "geometry_types": [fmt.CUBOID_2D, fmt.CUBOID_3D],
            },
            {
                "name": "condition_good",
                "source_id": 5,
                "supercategory": "condition",
                "geometry_types": [fmt.CLASSIFICATION],
            },
            {
                "name": "condition_fair",
                "source_id": 6,
                "supercategory": "condition",
                "geometry_types": [fmt.CLASSIFICATION],
            },
            {
                "name": "condition_poor",
                "source_id": 7,
                "supercategory": "condition",
                "geometry_types": [fmt.CLASSIFICATION],
            },
        ],
        attributes=[
            {"name": "width_mm", "type": "number", "categories": ["crack"]},
            {"name": "exposed_rebar", "type": "boolean", "categories": ["spalling"]},
            {
                "name": "type",
                "type": "choice",
                "allowed_values": ["elastomeric", "pot", "sliding"],
                "categories": ["bearing"],
            },
            {"name": "structure", "type": "text", "scope": "item"},
            {"name": "span", "type": "number", "scope": "item"},
        ],
        guideline="Inspection defect catalogue",
        guideline_versions=[
            ("v2.0", date(2025, 11, 1), "Aligned with the national inspection manual."),
            ("v2.1", date(2026, 2, 20), "Crack width classes."),
        ],
        drawer=draw_bridge,
        versions=[20],
        annotators=["E-1", "E-2"],
    ),
]
