"""Synthetic "shapes world": deterministic drawn scenes of coloured shapes and words with exact ground truth.

The offline default dataset and test data of every benchmark task, and training data for tiny models.
Depends only on the standard library, numpy and Pillow.
"""

from synthetic.conversations import stage1_records, stage2_records, write_dataset
from synthetic.world import (
    COLORS,
    QA,
    SHAPES,
    WORDS,
    Scene,
    Shape,
    color_qa,
    count_qa,
    existence_qa,
    first_qa,
    make_scene,
    multiple_choice,
    ocr_qa,
    ocr_tokens,
    position_qa,
    question_set,
    scenes,
    shape_qa,
)

__all__ = [
    "first_qa",
    "COLORS",
    "QA",
    "SHAPES",
    "WORDS",
    "Scene",
    "Shape",
    "color_qa",
    "count_qa",
    "existence_qa",
    "make_scene",
    "multiple_choice",
    "ocr_qa",
    "ocr_tokens",
    "position_qa",
    "question_set",
    "scenes",
    "shape_qa",
    "stage1_records",
    "stage2_records",
    "write_dataset",
]
