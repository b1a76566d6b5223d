"""BraTS 2021 from the user's files: 2-D axial slices of flair, t1ce, t1, t2 (segmentation, 4 classes).

`path` is the folder under the data root, in either layout (`brats_layout`, `auto` tells them
apart): the official h5 files `{train,valid,test}/*.h5` (image (4, H, W, D), label (H, W, D)),
or the raw BraTS 2021 NIfTI cases (a folder per case with `*_flair`, `*_t1`, `*_t1ce`, `*_t2`,
`*_seg` `.nii.gz`), either in `{train,valid,test}/` or all in one folder, then split by
`data_seed` into `valid_fraction` and `test_fraction` of the cases (our fractions: the paper's
split is not in the official code). Labels {0, 1, 2, 4} become {0, 1, 2, 3}. The reader
(cggm_core.data.files.brats) checks every header and shape when the run starts and names the file.

Training, as the official `BraTSData`: each epoch, `slices_per_case` slices per case drawn among
the case's tumour slices, seeded by (data_seed, epoch, index) — the trainer's `set_epoch` reaches
the source through `LoaderSplit` — centre-cropped to `crop_size`², with the official augmentation
(`brats_augment`). Evaluation is deterministic, over every slice of each case (`eval_slices`;
"official" is the official quirk of one random tumour slice per case), and every slice carries
its case as its group, so val/test Dice is per volume (the BraTS protocol). Slices are read per
sample by the DataLoader; `cache_cases` whole cases stay decoded per process for evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import tasks
from ..settings import Setting, SettingError
from .base import InputKind, InputSpec, LoaderSplit, MultimodalData
from .files import BratsEvalSlices, read_brats
from .files.brats import NUM_CLASSES
from .files.brats_cases import MODALITIES
from .from_files import FileBacked, path_setting


class Brats(FileBacked):
    name = "brats"
    help = (
        "BraTS 2021 from your files under the data root ($CGGM_DATA_DIR), official h5 or raw NIfTI: "
        "tumour segmentation on 2-D slices of flair, t1ce, t1, t2; per-volume Dice"
    )
    default_model = "segnet"
    settings = [
        path_setting("brats", "the BraTS folder ({train,valid,test}/*.h5, or NIfTI case folders)"),
        Setting("brats_layout", "str", "auto", "which layout the folder holds", choices=("auto", "h5", "nifti")),
        Setting("crop_size", "int", 160, "side of the centre crop of every slice (official: 160)", min=8, max=1024),
        Setting("slices_per_case", "int", 1, "training slices drawn per case per epoch (official: 1)", min=1, max=1024),
        Setting(
            "eval_slices",
            "str",
            "all",
            "evaluation slices: every slice of each case, only its tumour slices, or the official quirk "
            "(one random tumour slice per case)",
            choices=("all", "tumour", "official"),
        ),
        Setting("brats_augment", "bool", True, "the official training augmentation (rot90, flip, noise)"),
        Setting("brats_normalize", "bool", True, "NIfTI: z-score each modality over its brain voxels"),
        Setting(
            "valid_fraction",
            "float",
            0.1,
            "NIfTI cases in one folder: the fraction held out to validate",
            min=0.0,
            max=0.9,
        ),
        Setting(
            "test_fraction", "float", 0.2, "NIfTI cases in one folder: the fraction held out to test", min=0.0, max=0.9
        ),
        Setting("cache_cases", "int", 2, "whole cases kept decoded per process (~150 MB each)", min=1, max=1024),
    ]

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        super().check(cfg)
        if cfg["valid_fraction"] + cfg["test_fraction"] >= 1.0:
            raise SettingError(
                f"settings 'valid_fraction' + 'test_fraction' = {cfg['valid_fraction'] + cfg['test_fraction']:g}; "
                "they must leave cases to train on (sum < 1)"
            )

    @classmethod
    def modality_names(cls, cfg: Mapping[str, Any]) -> list[str]:
        return list(MODALITIES)

    @classmethod
    def task_name(cls, cfg: Mapping[str, Any]) -> str:
        return "segmentation"

    @classmethod
    def input_kinds(cls, cfg: Mapping[str, Any]) -> InputKind:
        return "image"

    @classmethod
    def load(cls, cfg: Mapping[str, Any], data_seed: int) -> MultimodalData:
        crop = int(cfg["crop_size"])
        ds = read_brats(
            cls.resolve_path(cfg),
            layout=cfg["brats_layout"],
            crop=(crop, crop),
            seed=data_seed,
            slices_per_case=int(cfg["slices_per_case"]),
            eval_slices=cfg["eval_slices"],
            augment=bool(cfg["brats_augment"]),
            normalize=bool(cfg["brats_normalize"]),
            valid_fraction=float(cfg["valid_fraction"]),
            test_fraction=float(cfg["test_fraction"]),
            cache_cases=int(cfg["cache_cases"]),
        )

        def evaluation(source: Any) -> LoaderSplit:
            assert isinstance(source, BratsEvalSlices)
            return LoaderSplit(source, groups=source.slice_case)  # (N,) the case of each slice

        return MultimodalData(
            name=cls.name,
            modalities=list(MODALITIES),
            task=tasks.segmentation(NUM_CLASSES),
            train=LoaderSplit(ds.train),
            val=evaluation(ds.valid),
            test=evaluation(ds.test),
            info={**ds.info, "sizes": [len(ds.train), len(ds.valid), len(ds.test)]},
            inputs={m: InputSpec("image", (1, crop, crop)) for m in MODALITIES},
        )
