"""Parse the alignment-discretion HH-RLHF slice (shared/data, never shipped with the product).

Conventions of shared/data/alignment-discretion/README.md: p_c = sign(prob_A − prob_B), set to 0
when NA beats both or prob_A == prob_B; annotators: human = +1 everywhere, reward models
sign(reward_a − reward_b), generic LLM judges sign((s0 − s1)/2) with abstention when NA wins in
either order, RLHF policy sign(log_prob_chat_chosen − log_prob_chat_rejected) on "0,1" rows.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parents[2] / "../shared/data/alignment-discretion"
N_PAIRS, N_PRINCIPLES = 2312, 21

REWARD_MODELS = {
    "rm_llama3_8b": "Llama3-8B_reward_model_trained_in-hh-harmlesness_evaluated_in-hh-harmlesness"
    "_partition-test.csv",
    "rm_mistral_7b": "Mistral7B_reward_model_trained_in-hh-harmlesness_evaluated_in-hh-harmlesness"
    "_partition-test.csv",
    "rm_most_downloaded": "reward_preference_data_reward_model-most_downloaded_hh_in_dataset_hh"
    "_partition-None.csv",
}
LLM_JUDGES = {
    "judge_gpt4o": "hh_test_generic_4ob.csv",
    "judge_deepseek_v3": "hh_test_generic_deepseekv3.csv",
    "judge_sonnet_3_5": "hh_test_generic_sonnet3.5.csv",
}
POLICY = (
    "LLM_rewards_model_no_NA-Llama3-8B_data_trained-hh-harmlesness_dataset_eval-hh-harmlesness.csv"
)


def _columns(path: Path) -> dict[str, list[str]]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        cols = list(zip(*reader, strict=True))
    return {name: list(col) for name, col in zip(header, cols, strict=True)}


def _f(col: list[str]) -> np.ndarray:
    return np.asarray(col, dtype=np.float64)


def _i(col: list[str]) -> np.ndarray:
    return np.asarray(col, dtype=np.int64)


def _sign_na(a: np.ndarray, b: np.ndarray, na: np.ndarray) -> np.ndarray:
    s = np.sign(a - b)
    s[(na > a) & (na > b)] = 0
    return s


def principle_matrix(data_dir: Path = DATA_DIR) -> np.ndarray:
    """2312 × 21 int8 oracle verdict matrix P."""
    c = _columns(data_dir / "principle_specific_preferences/hh_test_seed_4ob.csv")
    rows, pids = _i(c["row_id"]), _i(c["principle_id"])
    P = np.zeros((N_PAIRS, N_PRINCIPLES), dtype=np.int8)
    P[rows, pids] = _sign_na(_f(c["prob_A"]), _f(c["prob_B"]), _f(c["prob_NA"]))
    return P


def annotators(data_dir: Path = DATA_DIR) -> dict[str, np.ndarray]:
    """Annotator preference vectors (+1 = prefers chosen, 0 = abstain), length 2312 each."""
    out: dict[str, np.ndarray] = {"human": np.ones(N_PAIRS, dtype=np.int8)}
    for name, fname in REWARD_MODELS.items():
        c = _columns(data_dir / "reward_model_preferences" / fname)
        rows = _i(c["row_id"])
        keep = rows < N_PAIRS
        a = np.zeros(N_PAIRS, dtype=np.int8)
        a[rows[keep]] = np.sign(_f(c["reward_a"]) - _f(c["reward_b"]))[keep]
        out[name] = a
    for name, fname in LLM_JUDGES.items():
        c = _columns(data_dir / "llm_preferences" / fname)
        rows, order = _i(c["row_id"]), _i(c["order"])
        pa, pb, pna = _f(c["prob_A"]), _f(c["prob_B"]), _f(c["prob_NA"])
        s = np.sign(pa - pb)
        s0 = np.zeros(N_PAIRS)
        s1 = np.zeros(N_PAIRS)
        s0[rows[order == 0]] = s[order == 0]
        s1[rows[order == 1]] = s[order == 1]  # order 1: A = rejected, so -s1 favours chosen
        a = np.sign((s0 - s1) / 2).astype(np.int8)
        a[rows[(pna > pa) & (pna > pb)]] = 0  # NA wins in either order: abstain
        out[name] = a
    c = _columns(data_dir / "llm_preferences" / POLICY)
    rows = _i(c["row_id"])
    first = np.asarray(c["order"]) == "0,1"
    a = np.zeros(N_PAIRS, dtype=np.int8)
    a[rows[first]] = np.sign(_f(c["log_prob_chat_chosen"]) - _f(c["log_prob_chat_rejected"]))[first]
    out["policy_llama3_8b"] = a
    return out


def principle_names(data_dir: Path = DATA_DIR) -> list[str]:
    """Short labels of the 21 CCAI seed principles, in principle_id order."""
    lines = (data_dir / "principles/ccai_seed_short.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip()]
