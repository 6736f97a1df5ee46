"""ATS policies and the tensor transformations they are made of."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps  # pillow comes with matplotlib (a dependency)

from defenses import DefenseError, augment, parse_defense
from defenses.ats import SUB_POLICIES, parse_policy


def images(n: int = 4, channels: int = 3) -> torch.Tensor:
    return torch.rand(n, channels, 32, 32, generator=torch.Generator().manual_seed(0))


def test_search_space_and_named_policies() -> None:
    assert len(SUB_POLICIES) == 50
    assert SUB_POLICIES[21] == ("translateX", 5) and SUB_POLICIES[13] == ("brightness", 5)
    assert SUB_POLICIES[3] == ("translateX", 9) and SUB_POLICIES[7] == ("translateY", 2)
    assert SUB_POLICIES[4] == ("sharpness", 1) and SUB_POLICIES[15] == ("brightness", 9)
    assert parse_policy("hybrid") == ((21, 13, 3), (7, 4, 15))
    with pytest.raises(DefenseError, match="policy"):
        parse_policy("1-2-50")


@pytest.mark.parametrize("policy", ["21-13-3", "7-4-15", "hybrid", "0-1-2-6-10-11-12-14-28-37"])
@pytest.mark.parametrize("channels", [1, 3])
def test_policies_keep_shape_range_and_labels(policy: str, channels: int) -> None:
    x, y = images(channels=channels), torch.arange(4)
    out, labels = parse_defense(f"ats:policy={policy}").transform_batch(
        x, y, torch.Generator().manual_seed(0)
    )
    assert out.shape == x.shape and torch.equal(labels, y)
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.allclose(out, x)


def test_every_sub_policy_runs_in_range() -> None:
    x = images(1)[0]
    g = torch.Generator().manual_seed(0)
    for operation, magnitude in SUB_POLICIES:
        out = augment.OPERATIONS[operation](x, augment.MAGNITUDES[operation][magnitude], g)
        assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1, operation


def test_operations_do_what_they_say() -> None:
    g = torch.Generator().manual_seed(0)
    x = images(1)[0]
    assert torch.equal(augment.invert(x, 0, g), 1 - x)
    shifted = augment.translate_x(x, 4 / 32, g)
    assert torch.allclose(shifted[:, :, 4:-4], x[:, :, 8:]) or torch.allclose(
        shifted[:, :, 4:-4], x[:, :, :-8]
    )
    low = x * 0.5 + 0.2
    stretched = augment.autocontrast(low, 0, g)
    assert torch.allclose(stretched.amin(dim=(1, 2)), torch.zeros(3), atol=1e-6)
    assert torch.allclose(stretched.amax(dim=(1, 2)), torch.ones(3), atol=1e-6)
    levels = torch.round(augment.posterize(x, 3, g) * 255).long()
    assert torch.all(levels % 32 == 0)
    flat = augment.equalize(x * 0.3, 0, g)  # a narrow histogram is spread over the full range
    assert flat.max() > 0.95
    assert torch.equal(augment.solarize(x, 256, g), torch.round(x * 255) / 255)
    assert torch.allclose(augment.rotate(x, 0, g), x)


def test_hybrid_uses_both_policies() -> None:
    """With the crop disabled, 21-13-3 only moves a square sideways and 7-4-15 moves it vertically."""
    x = torch.zeros(40, 1, 32, 32)
    x[:, :, 12:20, 12:20] = 0.5
    g = torch.Generator().manual_seed(0)
    out, _ = parse_defense("ats:policy=hybrid,padding=0").transform_batch(x, torch.zeros(40), g)
    rows = [set(torch.nonzero(o[0].sum(dim=1)).flatten().tolist()) for o in out]
    vertical = sum(bool(r - set(range(12, 20))) for r in rows)
    assert 0 < vertical < 40


@pytest.mark.parametrize(
    "operation, magnitude, pil, tolerance",
    [
        ("equalize", 0, lambda img: ImageOps.equalize(img), 0),
        ("posterize", 6, lambda img: ImageOps.posterize(img, 6), 0),
        ("solarize", 128, lambda img: ImageOps.solarize(img, 128), 0),
        (
            "translateX",
            5 / 32,
            lambda img: img.transform(img.size, Image.AFFINE, (1, 0, 5, 0, 1, 0)),
            0,
        ),
        ("rotate", 10, None, 0),
        ("autocontrast", 0, lambda img: ImageOps.autocontrast(img), 1),
        ("contrast", 0.3, lambda img: ImageEnhance.Contrast(img).enhance(1.3), 1),
        ("color", 0.3, lambda img: ImageEnhance.Color(img).enhance(1.3), 1),
        ("brightness", 0.3, lambda img: ImageEnhance.Brightness(img).enhance(1.3), 1),
        ("sharpness", 0.5, lambda img: ImageEnhance.Sharpness(img).enhance(1.5), 1),
    ],
)
def test_operations_match_pil(operation, magnitude, pil, tolerance, monkeypatch) -> None:  # noqa: ANN001
    """Against the PIL operations of the reference code, in 8-bit levels (signs fixed to +)."""
    monkeypatch.setattr(augment, "random_sign", lambda generator: 1.0)
    pixels = (torch.rand(32, 32, 3, generator=torch.Generator().manual_seed(1)) * 255).to(
        torch.uint8
    )
    img = Image.fromarray(pixels.numpy())
    if pil is None:  # rotation about the centre, grey outside, as the reference's rotate_with_fill
        rotated = img.convert("RGBA").rotate(magnitude)
        grey = Image.new("RGBA", rotated.size, (128,) * 4)
        expected = Image.composite(rotated, grey, rotated).convert("RGB")
    else:
        expected = pil(img)
    ours = augment.OPERATIONS[operation](
        pixels.permute(2, 0, 1).float() / 255, magnitude, torch.Generator()
    )
    ours_levels = torch.round(ours.permute(1, 2, 0) * 255)
    difference = (ours_levels - torch.from_numpy(np.asarray(expected)).float()).abs()
    assert difference.max() <= tolerance
