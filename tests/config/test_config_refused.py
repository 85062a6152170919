"""Every bad config is refused with a ConfigError whose message names what is wrong.

A simulator that silently ignores a typo (or coerces "10" to 10) runs the wrong experiment
for hours; the message must point at the key so the user can fix it in one try.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fslsage_ray.config import ConfigError, config_from_dict, load_config, parse_overrides


def _refused(call, *needles: str) -> None:
    with pytest.raises(ConfigError) as info:
        call()
    message = str(info.value)
    for needle in needles:
        assert needle in message, f"{needle!r} not in {message!r}"


OVERRIDE_CASES = [
    # (overrides, substrings the message must contain)
    (["algorithm.upload_evry=3"], ["algorithm.upload_evry", "did you mean", "upload_every"]),
    (
        ["algorithm.server_order=client_major", "runtime.upload_order=arrival"],
        ["client_major", "arrival"],
    ),
    (["algorithm.server_order=random"], ["algorithm.server_order", "interleaved"]),
    (["algoritm.num_clients=3"], ["algoritm", "did you mean", "algorithm"]),
    (["zzz.q=1"], ["zzz", "known keys"]),
    (["data.nmae=digits"], ["data.nmae", "did you mean", "name"]),
    (["algorithm.num_clients='10'"], ["algorithm.num_clients", "expected int", "str"]),
    (["algorithm.num_clients=true"], ["algorithm.num_clients", "expected int", "bool"]),
    (["algorithm.num_clients=2.5"], ["algorithm.num_clients", "expected int", "float"]),
    (["data.name=[digits]"], ["data.name", "expected str", "list"]),
    (["optim.lr=fast"], ["optim.lr", "expected float"]),
    (["optim.lr=true"], ["optim.lr", "expected float", "bool"]),
    (["run.count_labels=1"], ["run.count_labels", "expected bool"]),
    (["data.train_subset=abc"], ["data.train_subset", "expected int"]),
    (["data.alpha=0"], ["data.alpha", "> 0"]),
    (["data.alpha=-1.5"], ["data.alpha", "> 0"]),
    (["algorithm.upload_every=0"], ["algorithm.upload_every", "(q)", ">= 1"]),
    (["alignment.every=0"], ["alignment.every", "(l)", ">= 1"]),
    (["algorithm.align_every=0"], ["alignment.every", "(l)", ">= 1"]),  # the old key maps
    (["algorithm.num_clients=0"], ["algorithm.num_clients", ">= 1"]),
    (["algorithm.num_clients=-3"], ["algorithm.num_clients", ">= 1"]),
    (["algorithm.batch_size=0"], ["algorithm.batch_size", ">= 1"]),
    (["runtime.backend=dask"], ["runtime.backend", "ray", "inprocess"]),
    (["data.partition=pathological"], ["data.partition", "dirichlet", "pathological"]),
    (["data.name=mnist"], ["data.name", "digits", "mnist"]),
    (["algorithm.name=splitfed"], ["algorithm.name", "fsl_sage", "splitfed"]),
    (["runtime.actor_num_cpus=-1"], ["runtime.actor_num_cpus", ">= 0"]),
    (["runtime.actor_num_gpus=-0.5"], ["runtime.actor_num_gpus", ">= 0"]),
    (["runtime.server_num_cpus=-1"], ["runtime.server_num_cpus", ">= 0"]),
    (["runtime.server_num_gpus=-2"], ["runtime.server_num_gpus", ">= 0"]),
    (["runtime.actor_num_cpus=0"], ["client actor must request some CPU or GPU"]),
    (["run.rounds=0"], ["run.rounds", ">= 1"]),
    (["run.max_gib=0"], ["run.max_gib", "> 0"]),
    (["data.name=parquet"], ["data.name=parquet", "train_path"]),
    (["data.name=parquet", "data.train_path=a", "data.test_path=b"], ["data.num_classes"]),
    (["run.rounds"], ["run.rounds", "section.key=value"]),
    (["=3"], ["'=3'", "section.key=value"]),
    (["run.rounds 3"], ["run.rounds 3", "section.key=value"]),
    (["run=3"], ["run", "expected a mapping"]),
    (["run.rounds.x=3"], ["run.rounds", "expected int"]),
    (["run=3", "run.rounds=2"], ["run.rounds", "'run' is not a section"]),
    (["run.rounds=[1"], ["run.rounds=[1", "cannot parse value"]),
    (["runtime.device=gpu"], ["runtime.device", "auto", "cuda", "'gpu'"]),
    (["runtime.device=cuda"], ["runtime.device=cuda on Ray", "actor_num_gpus > 0"]),
    (["runtime.device=cuda", "runtime.actor_num_gpus=0.5"], ["server_num_gpus > 0"]),
    (["run.stop_at_accuracy=81"], ["run.stop_at_accuracy", "fraction", "81"]),
    (["run.stop_at_accuracy=0"], ["run.stop_at_accuracy", "fraction"]),
    (["run.max_minutes=0"], ["run.max_minutes", "> 0"]),
]


@pytest.mark.parametrize(("overrides", "needles"), OVERRIDE_CASES, ids=lambda v: repr(v)[:60])
def test_bad_override_refused(overrides: list[str], needles: list[str]) -> None:
    _refused(lambda: load_config(None, overrides), *needles)


DICT_CASES = [
    ({"algorithm": {"upload_evry": 3}}, ["algorithm.upload_evry", "did you mean"]),
    ({"runtime": {"backend": "ray", "adress": "x"}}, ["runtime.adress", "did you mean"]),
    ({"data": "digits"}, ["data", "expected a mapping"]),
    ({"algorithm": [1, 2]}, ["algorithm", "expected a mapping"]),
    ({"data": {"num_classes": 2.0}}, ["data.num_classes", "expected int"]),
    ({"run": {"out_dir": 5}}, ["run.out_dir", "expected str"]),
]


@pytest.mark.parametrize(("raw", "needles"), DICT_CASES, ids=lambda v: repr(v)[:60])
def test_bad_dict_refused(raw: dict, needles: list[str]) -> None:
    _refused(lambda: config_from_dict(raw), *needles)


def test_conflicting_overrides_refused_by_parser() -> None:
    overrides = ["run.rounds=3", "run.rounds.x=1"]
    _refused(lambda: parse_overrides(overrides), "'rounds' is not a section")


FILE_CASES = [
    ("bad.yaml", "data: [1, 2\n", ["bad.yaml", "not valid YAML"]),
    ("list.yaml", "- data\n- run\n", ["list.yaml", "mapping at the top level"]),
    ("scalar.yaml", "just text\n", ["scalar.yaml", "mapping at the top level"]),
    ("typo.yaml", "algorithm:\n  upload_evry: 3\n", ["algorithm.upload_evry", "did you mean"]),
    ("alpha.yaml", "data:\n  alpha: 0\n", ["data.alpha", "> 0"]),
]


@pytest.mark.parametrize(("name", "text", "needles"), FILE_CASES, ids=lambda v: str(v)[:30])
def test_bad_file_refused(tmp_path: Path, name: str, text: str, needles: list[str]) -> None:
    path = tmp_path / name
    path.write_text(text)
    _refused(lambda: load_config(path), *needles)


def test_missing_file_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    _refused(lambda: load_config(missing), "config file not found", "nope.yaml")


def test_folder_as_config_file_refused(tmp_path: Path) -> None:
    _refused(lambda: load_config(tmp_path), "config file not found")


def test_bad_override_refused_on_top_of_file(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("algorithm:\n  num_clients: 4\n")
    _refused(lambda: load_config(path, ["algorithm.num_clients=0"]), "algorithm.num_clients")


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("runtime.local_num_cpus=-1", "runtime.local_num_cpus"),
        ("runtime.local_num_gpus=-1", "runtime.local_num_gpus"),
        ("run.seed=-1", "run.seed"),
    ],
)
def test_unvalidated_negatives_refused(override: str, key: str) -> None:
    _refused(lambda: load_config(None, [override]), key)
