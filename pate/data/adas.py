"""``adas``: a synthetic driving log from a fleet of cars with driver-assistance systems.

The running example of the project. Each record is one decision of one car::

    <vehicle id, location (x, y), time of day, sensor readings> -> action taken

The sensors are: speed, speed limit, speed over the limit, gap to the lead vehicle, headway, closing speed, time to collision (capped
at 30 s), lane offset, lateral
velocity, road curvature, traffic density and visibility. Actions (the labels) are
``keep``, ``accelerate``, ``brake``, ``hard_brake``, ``lane_left`` and ``lane_right``.

What makes it a fair PATE benchmark:

* **Each car is one individual.** All its records share its ``individual_id``; the private, public and
  test sets hold disjoint cars.
* **Unbalanced.** Records per car follow a clipped log-normal (heavy right tail): a few cars log
  hundreds of decisions, most log a few dozen.
* **Non-IID.** Each car has a home area, its own hours on the road, its own cruising speed, and a
  driving style (reaction time, aggressiveness, lane discipline) that shifts both what it sees and how
  it acts.
* **Learnable, not perfectly.** The action is drawn from a softmax over scores that follow a rule on the
  sensors (time to collision, speed against the limit, lane drift, a slow leader), plus the driver's
  style and a temperature; the Bayes-optimal accuracy is therefore below 100%.

Everything is generated from one seed with NumPy in well under a second per 100,000 records.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pate.errors import PateError
from pate.io import Dataset, write_dataset

ACTIONS = ("keep", "accelerate", "brake", "hard_brake", "lane_left", "lane_right")
FEATURES = (
    "x_km",
    "y_km",
    "hour_sin",
    "hour_cos",
    "speed_mps",
    "speed_limit_mps",
    "speed_over_limit",
    "gap_m",
    "headway_s",
    "closing_speed_mps",
    "time_to_collision_s",
    "lane_offset_m",
    "lateral_velocity_mps",
    "curvature_per_km",
    "traffic_density",
    "visibility",
)


@dataclass(frozen=True)
class AdasConfig:
    """Sizes of the fleet. Defaults give ~100k private records from 2,500 cars (enough for 250 teachers)."""

    vehicles: int = 2500
    public_vehicles: int = 300
    test_vehicles: int = 300
    seed: int = 0
    median_records: float = 28.0
    tail: float = 0.9
    max_records: int = 400
    temperature: float = 0.2

    def __post_init__(self) -> None:
        for name in ("vehicles", "public_vehicles", "test_vehicles"):
            if getattr(self, name) < 1:
                raise PateError(f"Expected {name}={getattr(self, name)} >= 1.")
        if self.median_records < 1 or self.max_records < 1:
            raise PateError(
                f"Expected median_records={self.median_records} >= 1 and max_records >= 1."
            )
        if self.temperature <= 0:
            raise PateError(f"Expected temperature={self.temperature} > 0.")


def simulate(
    num_vehicles: int, *, rng: np.random.Generator, config: AdasConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate ``num_vehicles`` cars: ``(features, action logits, vehicle index)`` in car order."""
    counts = np.exp(rng.normal(np.log(config.median_records), config.tail, num_vehicles))
    counts = np.clip(np.round(counts), 3, config.max_records).astype(np.int64)
    vehicle = np.repeat(np.arange(num_vehicles), counts)
    n = len(vehicle)

    # Per-car traits: where and when it drives, how fast, how it reacts.
    home = rng.uniform(0.0, 40.0, (num_vehicles, 2))
    roam = rng.uniform(1.0, 6.0, num_vehicles)
    commute_hour = rng.choice([8.0, 13.0, 18.0, 22.0], num_vehicles, p=[0.4, 0.2, 0.3, 0.1])
    commute_hour = commute_hour + rng.normal(0.0, 1.0, num_vehicles)
    cruise_ratio = rng.normal(1.0, 0.08, num_vehicles)
    reaction_s = rng.lognormal(np.log(1.3), 0.15, num_vehicles)
    aggressiveness = rng.normal(0.0, 1.0, num_vehicles)
    lane_discipline = rng.lognormal(0.0, 0.3, num_vehicles)
    # A per-driver preference over actions: the style no rule captures.
    habit = rng.normal(0.0, 0.1, (num_vehicles, len(ACTIONS)))

    location = home[vehicle] + rng.normal(0.0, 1.0, (n, 2)) * roam[vehicle, None]
    hour = np.mod(commute_hour[vehicle] + rng.normal(0.0, 1.5, n), 24.0)
    rush = np.exp(-0.5 * ((hour - 8.0) / 1.2) ** 2) + np.exp(-0.5 * ((hour - 18.0) / 1.5) ** 2)
    urban = np.exp(-np.sum((location - 20.0) ** 2, axis=1) / (2 * 10.0**2))
    speed_limit = np.where(urban > 0.5, 13.9, np.where(urban > 0.15, 22.2, 30.6))
    density = np.clip(0.6 * rush + 0.5 * urban + rng.normal(0.0, 0.1, n), 0.0, 1.5)
    visibility = np.clip(
        1.0 - 0.5 * (np.abs(hour - 12.0) > 7.0) + rng.normal(0.0, 0.1, n), 0.1, 1.0
    )
    speed = np.clip(
        speed_limit * cruise_ratio[vehicle] * (1.0 - 0.45 * density) + rng.normal(0.0, 2.5, n),
        0.0,
        None,
    )
    gap = rng.gamma(2.0, 25.0 * (1.3 - 0.5 * np.minimum(density, 1.0)), n) + 2.0
    closing = rng.normal(0.5 + 2.0 * density, 2.5, n)
    lane_offset = rng.normal(0.0, 0.35 / lane_discipline[vehicle], n)
    lateral_velocity = rng.normal(0.0, 0.25, n) + 0.3 * lane_offset
    curvature = np.abs(rng.normal(0.0, 0.6 + 1.2 * urban, n))

    # The rule: scores per action from the sensors, shifted by the driver's style.
    ttc = np.where(closing > 0.05, gap / np.maximum(closing, 0.05), 60.0)
    reaction = reaction_s[vehicle] / visibility
    aggr = aggressiveness[vehicle]
    over_limit = speed / speed_limit - 1.0
    headroom = np.clip(gap / np.maximum(speed, 1.0) - 1.5, -2.0, 4.0)
    slow_leader = np.clip(closing, 0.0, 6.0) * np.exp(-gap / 40.0)
    # Urgency: how much sooner than the driver's (visibility-adjusted) reaction budget a collision comes.
    urgency = np.clip(4.0 * reaction / np.maximum(ttc, 0.1), 0.0, 6.0)
    drift = lane_offset * lane_discipline[vehicle]
    scores = np.zeros((n, len(ACTIONS)))
    scores[:, 0] = 1.0
    scores[:, 1] = 8.0 * (-over_limit - 0.1) + 0.4 * headroom + 0.15 * aggr - 1.0
    scores[:, 2] = 8.0 * over_limit + 1.5 * urgency - 0.2 * aggr + 0.6
    scores[:, 3] = 2.5 * urgency - 2.0
    scores[:, 4] = 3.0 * drift + 0.3 * slow_leader + 0.4 * aggr - 0.3 - 0.3 * curvature
    scores[:, 5] = -3.0 * drift - 0.1 - 0.3 * curvature
    scores = scores + habit[vehicle]

    logits = scores / config.temperature
    features = np.stack(
        [
            location[:, 0],
            location[:, 1],
            np.sin(2 * np.pi * hour / 24.0),
            np.cos(2 * np.pi * hour / 24.0),
            speed,
            speed_limit,
            over_limit,
            gap,
            np.minimum(gap / np.maximum(speed, 1.0), 30.0),
            closing,
            np.minimum(ttc, 30.0),
            lane_offset,
            lateral_velocity,
            curvature,
            density,
            visibility,
        ],
        axis=1,
    ).astype(np.float32)
    return features, logits, vehicle


def generate_fleet(
    num_vehicles: int, *, first_id: int, rng: np.random.Generator, config: AdasConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Generate ``(features, labels, vehicle_ids)`` for ``num_vehicles`` cars, records shuffled."""
    features, logits, vehicle = simulate(num_vehicles, rng=rng, config=config)
    # The action is a draw from softmax(logits): Gumbel-max sampling.
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, logits.shape)))
    labels = np.argmax(logits + gumbel, axis=1).astype(np.int64)
    # Records of a car are logged over time, not in one block: shuffle the log.
    order = rng.permutation(len(labels))
    return features[order], labels[order], (vehicle[order] + first_id).astype(np.int64)


def build_adas(out_dir: str | Path, *, config: AdasConfig = AdasConfig()) -> dict[str, Path]:
    """Write ``private.h5``, ``public.h5`` (unlabeled) and ``test.h5`` for the adas fleet into ``out_dir``.

    Cars in the three files are disjoint: private ids start at 0, public at 1,000,000, test at 2,000,000.
    The public file keeps its true actions only as ``evaluation_labels`` (for measuring label accuracy in
    experiments); the pipeline never reads them.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    root = np.random.SeedSequence(config.seed)
    rngs = dict(
        zip(("private", "public", "test"), map(np.random.default_rng, root.spawn(3)), strict=True)
    )
    fleets = {
        "private": (config.vehicles, 0),
        "public": (config.public_vehicles, 1_000_000),
        "test": (config.test_vehicles, 2_000_000),
    }
    paths = {}
    for split, (vehicles, first_id) in fleets.items():
        features, labels, ids = generate_fleet(
            vehicles, first_id=first_id, rng=rngs[split], config=config
        )
        public = split == "public"
        attrs = {"unit_of_privacy": "individual"}
        if public:
            attrs["evaluation_labels_note"] = (
                "ground truth kept for experiments only; never used to train or answer"
            )
        paths[split] = out_dir / f"{split}.h5"
        write_dataset(
            paths[split],
            Dataset(
                features,
                None if public else labels,
                ids,
                num_classes=len(ACTIONS),
                class_names=ACTIONS,
                feature_names=FEATURES,
                name="adas",
                split=split,
                extra_attrs=attrs,
            ),
            private=split == "private",
            extra_arrays={"evaluation_labels": labels} if public else None,
        )
    return paths
