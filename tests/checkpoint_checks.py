"""What every checkpoint qponder writes must carry so that stock loaders take it.

The reference is transformers' own lookup (installed version, read in
``transformers/video_processing_utils.py``, ``BaseVideoProcessor.get_video_processor_dict``):
a video processor's settings come from ``processor_config.json["video_processor"]``, else
``video_preprocessor_config.json``, else the image processor's ``preprocessor_config.json``.
The official Qwen2.5-VL releases (huggingface.co/Qwen/Qwen2.5-VL-7B-Instruct: config.json,
generation_config.json, chat template, tokenizer files, preprocessor_config.json and the
weights) load through the last fallback; a checkpoint saved by transformers 5 nests the image
processor in processor_config.json, so it must carry the video entry itself.
"""

from __future__ import annotations

import json
from pathlib import Path

# the files a transformers-5 save of a Qwen2.5-VL chat checkpoint holds (the weights' and the
# tokenizer's, the chat template, the nested processor config); the official release holds
# the same settings in its older file layout (preprocessor_config.json, chat_template.json)
CHECKPOINT_FILES = {
    "config.json",
    "generation_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "chat_template.jinja",
}
PROCESSOR_ENTRIES = {"image_processor", "video_processor", "processor_class"}


def assert_stock_loadable(path: str | Path) -> None:
    """The checkpoint at ``path`` has the files and processor entries stock loaders need."""
    from transformers.video_processing_utils import BaseVideoProcessor

    path = Path(path)
    files = {p.name for p in path.iterdir()}
    assert files >= CHECKPOINT_FILES, sorted(CHECKPOINT_FILES - files)
    assert any(name.endswith(".safetensors") for name in files)
    processor = json.loads((path / "processor_config.json").read_text())
    assert set(processor) >= PROCESSOR_ENTRIES, sorted(PROCESSOR_ENTRIES - set(processor))
    assert processor["processor_class"] == "Qwen2_5_VLProcessor"
    video = processor["video_processor"]
    assert video["video_processor_type"] == "Qwen2VLVideoProcessor"
    image = processor["image_processor"]
    for key in ("size", "patch_size", "temporal_patch_size", "merge_size", "image_mean"):
        assert video[key] == image[key], key  # the same settings the fallback would read
    # the stock lookup (no torchvision needed to read the settings) finds them
    found, _ = BaseVideoProcessor.get_video_processor_dict(str(path))
    assert found["video_processor_type"] == "Qwen2VLVideoProcessor"
