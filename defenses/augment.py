"""Image transformations on torch tensors (C, H, W) in [0, 1], for the ATS defense.

Each follows the PIL operation of the same name used by AutoAugment-style policies
(Cubuk et al., CVPR 2019) as the ATS reference code applies it: geometric ones map
output pixels back to input pixels with PIL's affine conventions and fill the
outside with black (grey for rotation) — nearest-neighbour ones match PIL exactly,
shears use torch's bicubic kernel (a = −0.75; PIL's is −0.5); colour ones blend the image with a
degenerate version (grey, mean, black, smoothed) by a factor; histogram ones work on
the 256 levels of an 8-bit image. Random signs come from the generator passed in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _coin(generator: torch.Generator) -> bool:
    return bool(torch.randint(0, 2, (1,), generator=generator, device=generator.device).item())


def random_sign(generator: torch.Generator) -> float:
    """+1 or −1 with equal probability."""
    return 1.0 if _coin(generator) else -1.0


def _affine(img: torch.Tensor, matrix: tuple[float, ...], mode: str, fill: float) -> torch.Tensor:
    """PIL-style inverse affine: output pixel centre (x, y) samples input at (a x + b y + c, d x + e y + f)."""
    a, b, c, d, e, f = matrix
    _, h, w = img.shape
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=img.dtype, device=img.device) + 0.5,
        torch.arange(w, dtype=img.dtype, device=img.device) + 0.5,
        indexing="ij",
    )
    x_in = a * xs + b * ys + c
    y_in = d * xs + e * ys + f
    grid = torch.stack([2 * x_in / w - 1, 2 * y_in / h - 1], dim=-1).unsqueeze(0)
    # Interpolate with edge pixels repeated (as PIL does near the border), then fill
    # every output pixel whose source lies outside the image.
    out = F.grid_sample(
        img.unsqueeze(0), grid, mode=mode, padding_mode="border", align_corners=False
    )
    inside = (x_in >= 0) & (x_in < w) & (y_in >= 0) & (y_in < h)
    return torch.where(inside, out.squeeze(0), torch.full_like(img, fill)).clamp(0, 1)


def shear_x(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    return _affine(img, (1, m * random_sign(generator), 0, 0, 1, 0), "bicubic", 0.0)


def shear_y(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    return _affine(img, (1, 0, 0, m * random_sign(generator), 1, 0), "bicubic", 0.0)


def translate_x(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    """Shift by m × width pixels, either way; m is a fraction of the width."""
    shift = m * img.shape[2] * random_sign(generator)
    return _affine(img, (1, 0, shift, 0, 1, 0), "nearest", 0.0)


def translate_y(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    shift = m * img.shape[1] * random_sign(generator)
    return _affine(img, (1, 0, 0, 0, 1, shift), "nearest", 0.0)


def rotate(img: torch.Tensor, degrees: float, generator: torch.Generator) -> torch.Tensor:
    """Counter-clockwise by `degrees` about the centre, grey (128/255) outside."""
    _, h, w = img.shape
    angle = -math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    cx, cy = w / 2, h / 2
    matrix = (cos, sin, cx - cos * cx - sin * cy, -sin, cos, cy + sin * cx - cos * cy)
    return _affine(img, matrix, "nearest", 128 / 255)


def _grey(img: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma (PIL's "L"), shape (1, H, W)."""
    if img.shape[0] == 1:
        return img
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img[:3] * weights).sum(dim=0, keepdim=True)


def _blend(degenerate: torch.Tensor, img: torch.Tensor, factor: float) -> torch.Tensor:
    return (degenerate + factor * (img - degenerate)).clamp(0, 1)


def color(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    """Saturation: blend with the grey image by 1 ± m."""
    return _blend(_grey(img).expand_as(img), img, 1 + m * random_sign(generator))


def contrast(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    """Blend with the mean grey level by 1 ± m."""
    mean = torch.round(_grey(img).mean() * 255) / 255
    return _blend(mean.expand_as(img), img, 1 + m * random_sign(generator))


def brightness(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    """Blend with black by 1 ± m."""
    return _blend(torch.zeros_like(img), img, 1 + m * random_sign(generator))


def sharpness(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    """Blend with PIL's SMOOTH-filtered image (border pixels unfiltered) by 1 ± m."""
    kernel = torch.ones(3, 3, dtype=img.dtype, device=img.device)
    kernel[1, 1] = 5
    kernel = (kernel / 13).expand(img.shape[0], 1, 3, 3)
    smooth = img.clone()
    smooth[:, 1:-1, 1:-1] = F.conv2d(img.unsqueeze(0), kernel, groups=img.shape[0]).squeeze(0)
    return _blend(smooth, img, 1 + m * random_sign(generator))


def _levels(img: torch.Tensor) -> torch.Tensor:
    return torch.round(img.clamp(0, 1) * 255).long()


def posterize(img: torch.Tensor, bits: float, generator: torch.Generator) -> torch.Tensor:
    """Keep the top `bits` bits of each 8-bit level."""
    shift = 8 - int(bits)
    return ((_levels(img) >> shift) << shift).to(img.dtype) / 255


def solarize(img: torch.Tensor, threshold: float, generator: torch.Generator) -> torch.Tensor:
    """Invert every 8-bit level at or above `threshold` (0–256)."""
    levels = _levels(img)
    return torch.where(levels < threshold, levels, 255 - levels).to(img.dtype) / 255


def autocontrast(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    """Stretch each channel's range to [0, 1]."""
    lo = img.amin(dim=(1, 2), keepdim=True)
    hi = img.amax(dim=(1, 2), keepdim=True)
    span = hi - lo
    stretched = (img - lo) / span.clamp_min(1e-12)
    return torch.where(span > 0, stretched, img)


def equalize(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    """Histogram equalisation of each channel's 256 levels (PIL's ImageOps.equalize)."""
    levels = _levels(img)
    out = []
    for channel in levels:
        hist = torch.bincount(channel.reshape(-1), minlength=256)
        nonzero = hist[hist > 0]
        step = (int(nonzero.sum()) - int(nonzero[-1])) // 255
        if len(nonzero) <= 1 or step == 0:
            out.append(channel)
            continue
        cumulative = torch.cat([hist.new_zeros(1), hist.cumsum(0)[:-1]])
        lut = ((cumulative + step // 2) // step).clamp(max=255)
        out.append(lut[channel])
    return torch.stack(out).to(img.dtype) / 255


def invert(img: torch.Tensor, m: float, generator: torch.Generator) -> torch.Tensor:
    return 1 - img


OPERATIONS = {
    "shearX": shear_x,
    "shearY": shear_y,
    "translateX": translate_x,
    "translateY": translate_y,
    "rotate": rotate,
    "color": color,
    "posterize": posterize,
    "solarize": solarize,
    "contrast": contrast,
    "sharpness": sharpness,
    "brightness": brightness,
    "autocontrast": autocontrast,
    "equalize": equalize,
    "invert": invert,
}


def _linspace(start: float, stop: float) -> list[float]:
    return [start + (stop - start) * i / 9 for i in range(10)]


MAGNITUDES: dict[str, list[float]] = {
    "shearX": _linspace(0, 0.3),
    "shearY": _linspace(0, 0.3),
    "translateX": _linspace(0, 150 / 331),
    "translateY": _linspace(0, 150 / 331),
    "rotate": _linspace(0, 30),
    "color": _linspace(0, 0.5),
    "posterize": [float(round(v)) for v in _linspace(8, 4)],
    "solarize": _linspace(256, 0),
    "contrast": _linspace(0, 0.5),
    "sharpness": _linspace(0, 0.5),
    "brightness": _linspace(0, 0.5),
    "autocontrast": [0.0] * 10,
    "equalize": [0.0] * 10,
    "invert": [0.0] * 10,
}
"""Magnitude index 0–9 → operation argument, the ranges of the ATS search space."""


def random_crop_flip(img: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Crop back to size after zero padding by `padding` at a random offset; flip left-right half the time."""
    _, h, w = img.shape
    padded = F.pad(img, (padding, padding, padding, padding))
    top, left = (
        int(v)
        for v in torch.randint(
            0, 2 * padding + 1, (2,), generator=generator, device=generator.device
        )
    )
    out = padded[:, top : top + h, left : left + w]
    return out.flip(-1) if _coin(generator) else out
