"""Limits a request cannot exceed come from the loaded checkpoint, and refusing is a 400."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from infergraph.checkpoints.image_captioning import build_image_captioner
from infergraph.components.base import ComponentSettings
from infergraph.components.image_captioning import ImageCaptioner
from infergraph.errors import InputError, status_for
from tests.vision_fixtures import COLOURS, png

pytestmark = pytest.mark.slow


def test_captioning_limit_follows_the_decoders_positions(tmp_path: Path) -> None:
    folder = build_image_captioner(tmp_path / "blip", "tiny")  # 64 decoder positions
    component = ImageCaptioner(ComponentSettings(model_uri=str(folder), warmup=False))
    component.start()
    images = np.array([png(COLOURS[0])], dtype=object)
    assert component.max_new_tokens_limit == 63
    for params, message in [
        ({"max_new_tokens": 64}, "allowed 1..63"),
        ({"max_new_tokens": 60, "prompt": "a picture of"}, "decoder's 64 positions"),
    ]:
        with pytest.raises(InputError, match=message) as failure:
            component.predict({"image": images}, params)
        assert failure.value.input_name == "max_new_tokens"
        assert status_for(failure.value).http == 400
    result = component.predict({"image": images}, {"max_new_tokens": 63})
    assert result.outputs["caption"].shape == (1,)
