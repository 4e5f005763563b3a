"""The demo's real data sets (scikit-learn's bundled ones, no download) and their pipelines."""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn import datasets
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


@dataclass
class DemoDataset:
    slug: str
    name: str
    description: str
    task_type: str
    features: list[dict]
    frame: pd.DataFrame  # feature columns, in schema order
    target: pd.Series  # labels as strings (classification) or floats (regression)
    labels: list[str] = field(default_factory=list)
    tolerance: float | None = None
    value_min: float | None = None
    value_max: float | None = None
    item_view: str = "table"

    @property
    def model_columns(self) -> list[str]:
        return [f["name"] for f in self.features if not f.get("pii")]


def digits() -> DemoDataset:
    bunch = datasets.load_digits()
    names = [f"pixel_{i}" for i in range(64)]
    frame = pd.DataFrame(bunch.data.astype(int), columns=names)
    return DemoDataset(
        slug="digits",
        name="Handwritten digits",
        description="Read a scanned 8×8 handwritten digit (postcode sorting).",
        task_type="classification",
        features=[
            {
                "name": n,
                "type": "integer",
                "required": True,
                "min": 0,
                "max": 16,
                "group": "Image",
                "description": "Ink in one cell of the 8×8 scan, 0 (blank) to 16 (full)",
            }
            for n in names
        ],
        frame=frame,
        target=pd.Series(bunch.target.astype(str)),
        labels=[str(d) for d in range(10)],
        item_view="image_grid",
    )


def breast_cancer(seed: int = 7) -> DemoDataset:
    bunch = datasets.load_breast_cancer()
    names = [n.replace(" ", "_") for n in bunch.feature_names]
    frame = pd.DataFrame(bunch.data, columns=names).round(5)
    rng = np.random.default_rng(seed)
    frame.insert(0, "patient_ref", [f"P-{n:06d}" for n in rng.permutation(len(frame)) + 1000])
    features = [{"name": "patient_ref", "type": "string", "required": False, "pii": True}]
    features += [
        {
            "name": n,
            "type": "number",
            "required": True,
            "min": 0,
            "label": _cancer_label(n),
            "group": _cancer_group(n),
        }
        for n in names
    ]
    return DemoDataset(
        slug="breast-cancer",
        name="Breast biopsy triage",
        description="Flag fine-needle aspirate measurements as malignant or benign.",
        task_type="classification",
        features=features,
        frame=frame,
        target=pd.Series(np.where(bunch.target == 0, "malignant", "benign")),
        labels=["malignant", "benign"],
    )


def _cancer_group(name: str) -> str:
    """sklearn's 30 columns are ten cell measurements, each as mean, standard error and worst."""
    if name.startswith("worst_"):
        return "Worst (largest three cells)"
    if name.endswith("_error"):
        return "Standard error"
    return "Mean"


def _cancer_label(name: str) -> str:
    base = name.removeprefix("mean_").removeprefix("worst_").removesuffix("_error")
    return base.replace("_", " ").capitalize()


# sklearn's diabetes data (unscaled): what each short column name means.
DIABETES_FEATURES = {
    "age": {"label": "Age", "unit": "years", "group": "Patient"},
    "sex": {"label": "Sex", "description": "Coded 1 or 2", "group": "Patient"},
    "bmi": {"label": "Body mass index", "unit": "kg/m²", "group": "Patient"},
    "bp": {"label": "Average blood pressure", "unit": "mmHg", "group": "Patient"},
    "s1": {"label": "Total serum cholesterol (tc)", "unit": "mg/dL", "group": "Blood serum"},
    "s2": {"label": "Low-density lipoproteins (ldl)", "unit": "mg/dL", "group": "Blood serum"},
    "s3": {"label": "High-density lipoproteins (hdl)", "unit": "mg/dL", "group": "Blood serum"},
    "s4": {"label": "Total cholesterol / HDL (tch)", "group": "Blood serum"},
    "s5": {"label": "Log of serum triglycerides (ltg)", "group": "Blood serum"},
    "s6": {"label": "Blood sugar level (glu)", "unit": "mg/dL", "group": "Blood serum"},
}


def diabetes() -> DemoDataset:
    bunch = datasets.load_diabetes(scaled=False)
    names = list(bunch.feature_names)
    frame = pd.DataFrame(bunch.data, columns=names)
    return DemoDataset(
        slug="diabetes-progression",
        name="Diabetes progression",
        description="Estimate disease progression one year after baseline (a score of 25-346).",
        task_type="regression",
        features=[
            {"name": n, "type": "number", "required": True, **DIABETES_FEATURES.get(n, {})}
            for n in names
        ],
        frame=frame,
        target=pd.Series(bunch.target.astype(float)),
        tolerance=30.0,
        value_min=0.0,
        value_max=400.0,
    )


ALL = (digits, breast_cancer, diabetes)


def pipeline_for(dataset: DemoDataset, *, strength: float = 1.0, seed: int = 0) -> Pipeline:
    """A scikit-learn pipeline taking the use case's feature DataFrame (PII columns dropped)."""
    columns = dataset.model_columns
    select = ColumnTransformer([("scale", StandardScaler(), columns)], remainder="drop")
    if dataset.task_type == "classification":
        model = LogisticRegression(C=strength, max_iter=2000)
    else:
        model = RandomForestRegressor(
            n_estimators=40, max_depth=max(2, int(4 * strength)), random_state=seed, n_jobs=1
        )
    return Pipeline([("features", select), ("model", model)])


def fit(dataset: DemoDataset, rows: np.ndarray, *, strength: float = 1.0, seed: int = 0):
    frame = dataset.frame.iloc[rows]
    target = dataset.target.iloc[rows]
    return pipeline_for(dataset, strength=strength, seed=seed).fit(frame, target)
