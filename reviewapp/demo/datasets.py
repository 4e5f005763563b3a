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
            {"name": n, "type": "integer", "required": True, "min": 0, "max": 16} for n in names
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
    features += [{"name": n, "type": "number", "required": True, "min": 0} for n in names]
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


def diabetes() -> DemoDataset:
    bunch = datasets.load_diabetes(scaled=False)
    names = list(bunch.feature_names)
    frame = pd.DataFrame(bunch.data, columns=names)
    return DemoDataset(
        slug="diabetes-progression",
        name="Diabetes progression",
        description="Estimate disease progression one year after baseline (a score of 25-346).",
        task_type="regression",
        features=[{"name": n, "type": "number", "required": True} for n in names],
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
