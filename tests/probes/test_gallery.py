"""The reconstructions figure of a finished run: drawn from the run's final client part with
the run's probe settings, it is a real image file, and the PSNR it reports is that of an
attack through that client part (well above guessing on digits' near-invertible cut)."""

from __future__ import annotations

import pytest

pytest.importorskip("torchmetrics")

from PIL import Image  # noqa: E402

from fslsage_ray.config import load_config  # noqa: E402
from fslsage_ray.probes.gallery import save_run_reconstructions  # noqa: E402
from fslsage_ray.simulation import Simulation  # noqa: E402


@pytest.mark.slow  # a run and an attack: about 30 s on the shared 2 cores
def test_a_run_folder_gives_a_figure_of_originals_and_reconstructions(tmp_path):
    config = load_config(
        None,
        [
            "run.rounds=1",
            "algorithm.name=sflv1",
            "algorithm.num_clients=3",
            "data.train_subset=300",
            "data.test_subset=400",
            "probes.list=[reconstruction]",
            "probes.set_size=16",
            "probes.reconstruction.steps=150",
            "probes.reconstruction.public_rows=400",
            "probes.reconstruction.batch_size=32",
        ],
    )
    Simulation(config, run_dir=tmp_path / "run", progress=False).run()
    path, psnr_db = save_run_reconstructions(tmp_path / "run", tmp_path / "grid.png", count=6)
    with Image.open(path) as picture:
        width, height = picture.size
    assert width > height > 0
    assert psnr_db > 15.0  # the mean digit scores about 11 dB
