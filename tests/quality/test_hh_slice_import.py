"""The paper's HH-RLHF slice through the whole product: import the text, the principle list and
the eight annotator files, then ``discretion_report --json`` (research/discretion.md §2.3).

Skipped only when ``../shared/data`` is absent.
"""

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command

from annotation.datasets.importers.hh_rlhf import import_hh_rlhf
from annotation.models import Judgment, PrincipleVerdict
from annotation.principles.importers import import_principles
from annotation.projects import services as project_services
from annotation.quality.metrics.discretion import discrepancy, discretion_report
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="../shared/data absent")

AD = SHARED_DATA / "alignment-discretion"
MODELS = [
    "rm_llama3_8b",
    "rm_mistral_7b",
    "rm_most_downloaded",
    "judge_gpt4o",
    "judge_deepseek_v3",
    "judge_sonnet_3_5",
    "policy_llama3_8b",
]


def _slice_module():
    """tests/metrics/hh_slice_data.py (the CSV parser of the pure-metrics tests)."""
    path = Path(__file__).resolve().parents[1] / "metrics" / "hh_slice_data.py"
    spec = importlib.util.spec_from_file_location("hh_slice_data_for_quality", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_paper_slice_end_to_end(db, capsys):

    hh = _slice_module()
    started = time.perf_counter()
    principle_set = import_principles(
        path=AD / "principles/ccai_seed.txt",
        titles=AD / "principles/ccai_seed_short.txt",
        name="ccai-seed",
        publish=True,
    )
    project = project_services.create_project(
        name="HH harmless-base test",
        slug="hh-slice",
        principle_set=principle_set,
        task_kinds=["compare"],
    )
    assert (
        import_hh_rlhf(project=project, path=SHARED_DATA / "hh-rlhf/harmless-base/test.jsonl.gz")
        == 2312
    )

    def load(fmt, name, path, *extra):
        call_command(
            "import_judgments",
            "--project",
            project.slug,
            "--annotator",
            name,
            "--format",
            fmt,
            str(path),
            *extra,
        )

    load(
        "principle-oracle",
        "oracle_gpt4o",
        AD / "principle_specific_preferences/hh_test_seed_4ob.csv",
    )
    for name, fname in hh.REWARD_MODELS.items():
        extra = ["--ignore-unknown-rows"] if name == "rm_most_downloaded" else []
        load("reward-model", name, AD / "reward_model_preferences" / fname, *extra)
    for name, fname in hh.LLM_JUDGES.items():
        load("llm-judge", name, AD / "llm_preferences" / fname)
    load("policy-logprob", "policy_llama3_8b", AD / "llm_preferences" / hh.POLICY)
    imported = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "6240 rows with unknown row ids skipped" in out
    assert PrincipleVerdict.objects.count() == 2312 * 21
    assert Judgment.objects.count() == 2312 * 8

    started = time.perf_counter()
    call_command(
        "discretion_report",
        "--project",
        project.slug,
        "--reference",
        "oracle_gpt4o",
        "--bootstrap",
        "200",
        "--json",
    )
    reported = time.perf_counter() - started
    report = json.loads(capsys.readouterr().out)
    print(f"imports {imported:.1f} s, report {reported:.2f} s")

    assert report["pairs"] == 2312
    assert report["categories"] == {"consensus": 1172, "conflict": 376, "indifference": 764}
    human = report["annotators"]["human"]
    assert human["da"] == 339 / 1172 and human["da_n"] == 1172
    assert 0.005 < human["da_sd"] < 0.03
    assert set(report["annotators"]) == {"human", *MODELS}
    keys = [f"p{i:02d}" for i in range(21)]
    for name in MODELS:
        a = report["annotators"][name]
        assert 0 <= a["da"] <= 1 and a["da_n"] > 0 and isinstance(a["da_sd"], float)
        assert set(a["weights"]) == set(keys) and a["priority"]
        assert set(a["dd"]) == ({"human", *MODELS} - {name}) | {"declared"}
        assert a["dd"]["declared"] is None  # the CCAI seed list declares no precedence
        assert all(0 <= v <= 1 for k, v in a["dd"].items() if k != "declared")
        rows = report["supremacy"][name]
        assert rows and all(r["n"] > 0 and 0 <= r["ps"] <= 1 for r in rows)
    assert (
        report["annotators"]["rm_mistral_7b"]["da_n"] < report["annotators"]["rm_llama3_8b"]["da_n"]
    )

    # cross-check against the pure functions on the CSVs themselves
    P, annotators = hh.principle_matrix(), hh.annotators()
    pure = discretion_report(P, annotators, keys)["annotators"]
    for name, prof in pure.items():
        mine = report["annotators"][name]
        assert (mine["da"], mine["da_n"]) == (prof["da"], prof["da_n"]), name
        assert mine["priority"] == prof["priority"], name
        assert np.allclose(
            [v for v in mine["weights"].values() if isinstance(v, float)],
            [v for v in prof["weights"].values() if isinstance(v, float)],
        )
    assert report["supremacy"]["human"] == pure["human"]["supremacy"]
    assert report["supremacy"]["judge_sonnet_3_5"] == pure["judge_sonnet_3_5"]["supremacy"]
    for a, b in [("human", "rm_llama3_8b"), ("judge_gpt4o", "policy_llama3_8b")]:
        expected = discrepancy(pure[a]["weights"], pure[b]["weights"])
        assert report["annotators"][a]["dd"][b] == pytest.approx(expected)
