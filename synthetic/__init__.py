"""Synthetic "shapes world": deterministic drawn scenes of coloured shapes and words with exact ground truth.

The offline default dataset and test data of every benchmark task, and training data for tiny models.
Depends only on the standard library, numpy and Pillow.
"""

from synthetic.conversations import stage1_records, stage2_records, write_dataset
from synthetic.questions import (
    QA,
    color_qa,
    count_qa,
    existence_qa,
    first_qa,
    multiple_choice,
    ocr_qa,
    ocr_tokens,
    position_qa,
    question_set,
    shape_qa,
)
from synthetic.world import COLORS, SHAPES, WORDS, Scene, Shape, make_scene, scenes

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
