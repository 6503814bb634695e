"""Inter-annotator agreement: how consistently independent annotators labelled the same images.

Two families of measures, both vectorised with NumPy so that 100k images x 3 annotators take
seconds, not minutes:

* **Nominal** (a class per image, an attribute value per object): Cohen's kappa per pair of
  annotators, Fleiss' kappa over units every annotator rated, Krippendorff's alpha (nominal
  distance) over all units, with missing ratings. They agree with scikit-learn's
  ``cohen_kappa_score``, statsmodels' ``fleiss_kappa`` and the ``krippendorff`` package to 1e-9
  (tests/governance/test_agreement.py).
* **Geometry** (boxes, polygons, masks, keypoints): for each pair of annotators, their objects of
  the same class on the same image are matched one-to-one, maximising the summed similarity among
  pairs at or above a threshold (IoU >= 0.5 by default; OKS for keypoints). Matched pairs give
  precision, recall, F1 and the mean similarity. Annotator A of a pair is the reference:
  precision = matched / B's objects, recall = matched / A's objects; F1 is symmetric.

Which labels take part: the *candidates* (``Label.is_final=False``), each made by one annotator.
The final labels are the consensus; every annotator is also compared with them ("vs consensus").
Only images both annotators of a pair labelled count for that pair, so an annotator who did other
images is not charged with misses.

Matched objects across all annotator pairs form *clusters* (connected components of the match
graph): one cluster is one real-world object as the annotators saw it. Attribute agreement takes
clusters as its units, and consensus (``governance.quality.consensus``) fuses them.

Layout: ``nominal`` (kappas and alpha over categorical ratings), ``geometry`` (similarity, one-to-one
matching, label frames, pairwise comparison), ``analysis`` (clusters, tallies, per-image scores) and
``report`` (a version's agreement report, read from the database).
"""

from governance.quality.agreement.analysis import (
    Analysis,
    Tally,
    analyse,
    annotators_per_item,
    attribute_ratings,
    classification_ratings,
    clusters_of,
    item_scores,
    tally,
    tally_by,
)
from governance.quality.agreement.geometry import (
    BOX_KINDS,
    COCO_PERSON_SIGMAS,
    CONSENSUS,
    DEFAULT_SIGMA,
    DEFAULT_THRESHOLD,
    MASK_KINDS,
    MEASURED_KINDS,
    SIMILARITY,
    LabelFrame,
    PairMatch,
    compare_geometry,
    items_by_annotator,
    mask_iou_pairs,
    rle_of,
    sigmas_source,
)
from governance.quality.agreement.nominal import (
    MISSING,
    as_codes,
    cohen_kappa,
    encode_nominal,
    fleiss_kappa,
    krippendorff_alpha_nominal,
    nominal_agreement,
    pairwise_agreement,
    value_counts,
    value_key,
)
from governance.quality.agreement.report import (
    REPORT_LOWEST_ITEMS,
    VersionLabels,
    agreement_report,
    compute_agreement_report,
    load_version_labels,
)
from marketplace.formats.matching import box_iou, boxes_of, cross_pairs, keypoint_similarity, match_optimal

__all__ = [
    "Analysis",
    "BOX_KINDS",
    "COCO_PERSON_SIGMAS",
    "CONSENSUS",
    "DEFAULT_SIGMA",
    "DEFAULT_THRESHOLD",
    "LabelFrame",
    "MASK_KINDS",
    "MEASURED_KINDS",
    "MISSING",
    "PairMatch",
    "REPORT_LOWEST_ITEMS",
    "SIMILARITY",
    "Tally",
    "VersionLabels",
    "agreement_report",
    "analyse",
    "annotators_per_item",
    "as_codes",
    "attribute_ratings",
    "box_iou",
    "boxes_of",
    "classification_ratings",
    "clusters_of",
    "cohen_kappa",
    "compare_geometry",
    "compute_agreement_report",
    "cross_pairs",
    "encode_nominal",
    "fleiss_kappa",
    "item_scores",
    "items_by_annotator",
    "keypoint_similarity",
    "krippendorff_alpha_nominal",
    "load_version_labels",
    "mask_iou_pairs",
    "match_optimal",
    "nominal_agreement",
    "pairwise_agreement",
    "rle_of",
    "sigmas_source",
    "tally",
    "tally_by",
    "value_counts",
    "value_key",
]
