"""Training helpers: the B-cos CNN reaches the accuracy of the same standard CNN on digits."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from xai_plugins.bcos.train import compare_on_digits, train_digits


def test_bcos_cnn_within_two_points_of_standard_cnn_on_digits():
    results = compare_on_digits()
    bcos, standard = results["bcos"].test_accuracy, results["standard"].test_accuracy
    assert standard > 95, f"the standard CNN should learn digits, got {standard:.2f}%"
    assert bcos >= standard - 2, f"B-cos {bcos:.2f}% vs standard {standard:.2f}%"


class TinyStripes(Dataset):
    """Any torch Dataset works: 3×12×12 images in [0, 1], class = whether the stripe is horizontal."""

    def __init__(self, n: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, 2, (n,), generator=generator)
        self.images = torch.rand(n, 3, 12, 12, generator=generator) * 0.2
        for i, label in enumerate(self.labels):
            row = int(torch.randint(2, 10, (1,), generator=generator))
            if label:
                self.images[i, :, row] = 1.0
            else:
                self.images[i, :, :, row] = 1.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]


def test_train_digits_accepts_any_dataset_and_is_seeded():
    from xai_plugins.bcos.simple_cnn import BcosSimpleCNN

    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = BcosSimpleCNN(num_classes=2, widths=(8, 16), logit_temperature=0.1)
        runs.append(train_digits(model, train_set=TinyStripes(96, 0), test_set=TinyStripes(48, 1), epochs=3,
                                 batch_size=16))
    assert runs[0].losses == runs[1].losses
    assert runs[0].test_accuracy == runs[1].test_accuracy >= 75
    assert not runs[0].model.training
