"""The generation cap of every registered task, pinned against the original scripts: `scripts/v1_5/eval/*.sh`
pass no cap, so each task gets its script's default: `model_vqa_loader.py` 128 (`--max_new_tokens`, a literal 128
at the release), `model_vqa.py`, `model_vqa_science.py` and `model_vqa_mmbench.py` a literal 1024. A new task
must be added here."""

from __future__ import annotations

from tasks.registry import get_task, load_all

LOADER, MODEL_VQA, SCIENCE, MMBENCH = 128, 1024, 1024, 1024
# Reference: haotian-liu/LLaVA c121f04 (and ce1aa08, the evaluation-scripts release): which script each
# benchmark's .sh runs.
EXPECTED = {
    "vqav2_val": LOADER, "vqav2_testdev": LOADER,  # vqav2.sh
    "gqa": LOADER,  # gqa.sh
    "vizwiz_val": LOADER, "vizwiz_test": LOADER,  # vizwiz.sh
    "textvqa_val": LOADER,  # textvqa.sh
    "pope": LOADER,  # pope.sh
    "mme": LOADER,  # mme.sh
    "seed_image": LOADER, "seed_video": LOADER, "seed_all": LOADER,  # seed.sh
    "scienceqa_img": SCIENCE,  # sqa.sh
    "mmbench_en_dev": MMBENCH, "mmbench_cn_dev": MMBENCH, "mmbench_en_test": MMBENCH,  # mmbench{,_cn}.sh
    "mmbench_cn_test": MMBENCH,
    "llava_bench": MODEL_VQA,  # llavabench.sh
    "mmvet": MODEL_VQA,  # mmvet.sh
}


def test_every_registered_task_is_pinned():
    registered = set(load_all())
    assert registered - set(EXPECTED) == set(), "add the new task's cap (from its original script) to EXPECTED"
    assert set(EXPECTED) - registered == set()


def test_caps_match_the_original_scripts():
    assert {name: get_task(name).max_new_tokens for name in EXPECTED} == EXPECTED


def test_the_request_carries_the_cap():
    for name, cap in EXPECTED.items():
        task = get_task(name)
        doc = task.synthetic_docs(1)[0]
        assert task.request(doc, 0).settings.max_new_tokens == cap, name
