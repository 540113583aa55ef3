"""Privacy-utility frontier: student accuracy against epsilon for several Confident-GNMax settings.

    python scripts/frontier.py --dataset mnist --teachers runs/pate2018-mnist/teachers \\
        --data runs/pate2018-mnist/data --out runs/frontier-mnist

For each setting ``T,sigma1,sigma2,queries`` (``--setting``, repeatable; defaults per dataset below) it
runs ``pate label-and-distill`` with the given trained teachers (the votes are computed once and shared),
then the paper-convention analysis of :mod:`reproduce_pate2018`, and records the student's test accuracy
with three epsilons at delta = 1e-5 (paper orders; the papers' classic RDP-to-DP conversion unless
``--conversion improved``, for all three): the ledger's data-dependent value (realised cost,
discrete-noise bounds), the paper-convention value plus the smooth-sensitivity release cost, and the
data-independent value. The improved conversion (Balle et al. 2020, Thm. 21) turns any Renyi bound
between a pair of neighbouring datasets into an (epsilon, delta) bound for that pair, so it applies to
the release's composed bound as it does to the others. It writes ``frontier.json`` and
``frontier.png`` (the three epsilons of each setting on one row, the paper's published points marked)
into ``--out``.

The student is the pipeline's default (``--student-method auto``); ``--student-steps`` trades its
accuracy for time (each MNIST student takes minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for folder in (ROOT, ROOT / "scripts"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from reproduce_pate2018 import Setting, privacy_analysis, run_label_and_distill  # noqa: E402

#: Published points: (epsilon, accuracy, label, label offset in points). PATE 2017 Table 1 (LNMax,
#: moments accountant) and PATE 2018 Table 1 (Confident-GNMax, data-dependent epsilon), delta = 1e-5.
PAPER_POINTS = {
    "mnist": [
        (2.04, 0.980, "PATE 2017, LNMax, 100 queries", (8, -12)),
        (8.03, 0.981, "PATE 2017, LNMax, 1000 queries", (8, -12)),
        (1.97, 0.985, "PATE 2018, Confident-GNMax", (8, 6)),
    ],
    "adult": [
        (2.66, 0.830, "PATE 2018, LNMax", (8, -12)),
        (1.90, 0.837, "PATE 2018, Confident-GNMax", (8, 6)),
    ],
    "fashion-mnist": [],
}
DEFAULT_SETTINGS = {
    # The paper's setting, then fewer queries (the threshold check of every query dominates the cost),
    # and a larger sigma2 for the data-independent epsilon.
    "mnist": [
        "200,150,40,640",
        "200,150,40,320",
        "200,150,40,200",
        "200,150,40,160",
        "200,150,45,180",
    ],
    "fashion-mnist": ["200,150,40,640", "200,150,40,320", "200,150,40,200"],
    "adult": ["300,200,40,1500", "300,200,40,750", "300,200,40,500", "250,150,40,1500"],
}


def parse_setting(text: str, teachers: int) -> Setting:
    """``"T,sigma1,sigma2,queries"`` -> a :class:`Setting` (teacher arguments unused here)."""
    try:
        threshold, sigma1, sigma2, queries = text.split(",")
        return Setting(teachers, float(threshold), float(sigma1), float(sigma2), int(queries), ())
    except ValueError:
        raise SystemExit(
            f"--setting {text!r}: expected T,sigma1,sigma2,queries such as 200,150,40,640"
        ) from None


def run_setting(
    setting: Setting,
    *,
    teachers: Path,
    data: Path,
    work: Path,
    votes: Path | None,
    noise_seed: int | None,
    student_args: tuple[str, ...],
    conversion: str = "classic",
) -> dict:
    """One label-and-distill run and its analysis."""
    if work.exists():
        shutil.rmtree(work)
    (work / "workspace").mkdir(parents=True, mode=0o700)
    if votes is not None:
        shutil.copy2(votes, work / "workspace" / "votes.h5")
    start = time.perf_counter()
    result = run_label_and_distill(
        setting,
        teachers,
        data,
        work,
        noise_seed=noise_seed,
        student_args=student_args,
        conversion=conversion,
    )
    analysis = privacy_analysis(work / "workspace", setting, result["queries_seen"], conversion)
    return {
        "threshold": setting.threshold,
        "sigma1": setting.sigma1,
        "sigma2": setting.sigma2,
        "queries_considered": result["queries_seen"],
        "queries_answered": result["queries_answered"],
        "epsilon_data_dependent": result["epsilon_data_dependent_private"],
        "conversion": conversion,
        "epsilon_with_release": analysis["epsilon_with_release"],
        "epsilon_data_dependent_paper": analysis["epsilon_data_dependent_paper"],
        "epsilon_data_independent": result["epsilon"],
        "student_accuracy": result["student_test_accuracy"],
        "label_accuracy": result["label_accuracy"],
        "student_method": result["student_method"],
        "seconds": time.perf_counter() - start,
    }


def plot(rows: list[dict], dataset: str, path: Path) -> None:
    """Accuracy against the three epsilons of each setting, with the papers' points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5))
    styles = [
        ("epsilon_data_dependent", "o", "data-dependent (ledger)"),
        ("epsilon_with_release", "s", "data-dependent + smooth-sensitivity release"),
        ("epsilon_data_independent", "^", "data-independent"),
    ]
    for key, marker, label in styles:
        axes.scatter(
            [r[key] for r in rows],
            [100 * r["student_accuracy"] for r in rows],
            marker=marker,
            label=f"ours: {label}",
            zorder=3,
        )
    for row in rows:
        axes.plot(
            [row[key] for key, _, _ in styles],
            [100 * row["student_accuracy"]] * 3,
            color="0.8",
            linewidth=0.8,
            zorder=1,
        )
        axes.annotate(
            f"T={row['threshold']:g} s1={row['sigma1']:g} s2={row['sigma2']:g} "
            f"q={row['queries_considered']}",
            (row["epsilon_data_dependent"], 100 * row["student_accuracy"]),
            textcoords="offset points",
            xytext=(4, 4),
            fontsize=7,
        )
    for epsilon, accuracy, label, offset in PAPER_POINTS.get(dataset, []):
        axes.scatter([epsilon], [100 * accuracy], marker="*", s=160, color="crimson", zorder=4)
        axes.annotate(
            label,
            (epsilon, 100 * accuracy),
            textcoords="offset points",
            xytext=offset,
            fontsize=7,
        )
    axes.scatter([], [], marker="*", s=160, color="crimson", label="published (papers)")
    axes.set_xlabel("epsilon at delta = 1e-5")
    axes.set_ylabel("student test accuracy (%)")
    axes.set_title(f"PATE privacy-utility frontier, {dataset}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=sorted(DEFAULT_SETTINGS), default="mnist")
    parser.add_argument("--teachers", type=Path, required=True, help="trained teachers folder")
    parser.add_argument("--data", type=Path, required=True, help="folder of public.h5 and test.h5")
    parser.add_argument("--out", type=Path, required=True, help="output folder (runs inside)")
    parser.add_argument("--setting", action="append", default=None, help="T,sigma1,sigma2,queries")
    parser.add_argument("--noise-seed", type=int, default=None, help="seeded noise: NOT private")
    parser.add_argument("--student-steps", type=int, default=None)
    parser.add_argument(
        "--conversion",
        choices=("classic", "improved"),
        default="classic",
        help="RDP-to-DP conversion of every epsilon of the row (ledger, paper convention, with "
        "release, data-independent); classic is the papers' own",
    )
    parser.add_argument(
        "--student-arg", action="append", default=[], help="extra label-and-distill option"
    )
    args = parser.parse_args(argv)
    from pate.teachers import load_teachers

    num_teachers = load_teachers(args.teachers).num_teachers
    settings = [
        parse_setting(s, num_teachers) for s in args.setting or DEFAULT_SETTINGS[args.dataset]
    ]
    student_args = tuple(args.student_arg)
    if args.student_steps:
        student_args += ("--student-steps", str(args.student_steps))
    args.out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    votes = None
    for index, setting in enumerate(settings):
        work = args.out / f"setting-{index}"
        rows.append(
            run_setting(
                setting,
                teachers=args.teachers,
                data=args.data,
                work=work,
                votes=votes,
                noise_seed=args.noise_seed,
                student_args=student_args,
                conversion=args.conversion,
            )
        )
        votes = votes or work / "workspace" / "votes.h5"
        row = rows[-1]
        print(
            f"  answered {row['queries_answered']}/{row['queries_considered']}, "
            f"eps dd {row['epsilon_data_dependent']:.3f}, with release "
            f"{row['epsilon_with_release']:.3f}, di {row['epsilon_data_independent']:.3f}, "
            f"student {row['student_accuracy']:.4f}",
            flush=True,
        )
        (args.out / "frontier.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, args.dataset, args.out / "frontier.png")
    print(f"wrote {args.out / 'frontier.json'} and {args.out / 'frontier.png'}")
    return rows


if __name__ == "__main__":
    main()
