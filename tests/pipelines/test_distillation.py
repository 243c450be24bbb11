"""Fine-tuning with distillation: the pixel maps are pulled towards the starting model's."""

from __future__ import annotations

import csv

import pytest
import torch
import torch.nn.functional as F
from fixtures.training_catalog import write_training_catalog

from models import load_bundle
from models.panelnet import PanelOutput
from pipelines.training import loop as training
from pipelines.training.loop import TrainConfig, detection_loss, train

TINY = {"architecture": "panelnet", "model_kwargs": {"encoder": "res2net_tiny", "decoder_channels": 16},
        "tile_size": 32, "gsd_m": 0.5, "batch_size": 4, "mixup_rate": 0.0, "device": "cpu", "precision": "fp32"}


def _distill_loss(student: torch.Tensor, teacher: torch.Tensor, weight: float = 1.0) -> tuple[torch.Tensor, dict]:
    n = student.shape[0]
    batch = {"target": torch.ones(n), "mask": torch.zeros_like(student), "weight": torch.zeros_like(student)}
    return detection_loss(PanelOutput(torch.zeros(n), student), batch, 1.0, 0.0, teacher, weight)


def test_the_distillation_term_is_bce_towards_the_teacher_and_still_where_they_agree():
    teacher = torch.randn(2, 1, 8, 8)
    student = teacher.clone().requires_grad_(True)
    total, parts = _distill_loss(student, teacher)
    total.backward()
    assert student.grad.abs().max() < 1e-6  # no pull where the student already says what the teacher says
    assert parts["distill_loss"] == pytest.approx(float(F.binary_cross_entropy_with_logits(teacher, teacher.sigmoid())))
    away = torch.zeros(2, 1, 8, 8, requires_grad=True)
    _distill_loss(away, torch.full((2, 1, 8, 8), 3.0), weight=2.0)[0].backward()
    assert (away.grad < 0).all()  # a gradient step raises the logits towards the teacher's
    assert _distill_loss(away, teacher, weight=0.0)[1]["distill_loss"] == 0.0


def test_distillation_needs_a_starting_model_and_a_non_negative_weight(tmp_path):
    with pytest.raises(ValueError, match="distill_weight needs init_from"):
        TrainConfig(catalog=tmp_path, out=tmp_path, distill_weight=1.0)
    with pytest.raises(ValueError, match="distill_weight must be >= 0, got -1"):
        TrainConfig(catalog=tmp_path, out=tmp_path, init_from=tmp_path / "b.safetensors", distill_weight=-1.0)


def test_a_fine_tune_distils_from_its_starting_model_and_logs_the_term(tmp_path, monkeypatch):
    catalog = write_training_catalog(tmp_path / "chips").directory
    common = {**TINY, "catalog": catalog, "epochs": 1, "steps_per_epoch": 2, "lr": 3e-3}
    start = train(TrainConfig.from_dict({**common, "out": tmp_path / "start"}), progress=False)
    starting = load_bundle(start.best_bundle).model.eval()
    gaps = []
    loss = training.detection_loss

    def recording(output, batch, pixel_weight, bag_weight, teacher_logits, distill_weight):
        with torch.no_grad():
            expected = starting(batch["image"]).mask_logit
        gaps.append((float((teacher_logits - expected).abs().max()), distill_weight, teacher_logits.requires_grad))
        return loss(output, batch, pixel_weight, bag_weight, teacher_logits, distill_weight)

    monkeypatch.setattr(training, "detection_loss", recording)
    train(TrainConfig.from_dict({**common, "out": tmp_path / "tuned", "init_from": start.best_bundle,
                                 "distill_weight": 2.0}), progress=False)
    # Every step, after the student has moved too, the teacher is still the starting model in inference mode.
    assert len(gaps) == 2 and all(gap < 1e-4 and w == 2.0 and not grad for gap, w, grad in gaps)
    with open(tmp_path / "tuned" / "metrics.csv") as f:
        assert float(next(csv.DictReader(f))["distill_loss"]) > 0
