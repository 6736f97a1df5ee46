"""Does what the clients send fit the protocol the auditor was told? Warn once if not.

Without ground truth nothing says the attacks model the right protocol, so the auditor
compares what it can observe with what it was told:

- the weight a reply carries (`num-examples`, where the strategy weights by it) with
  the declared `batch_size`: a client that trained on more samples than the auditor
  reconstructs makes every reconstruction a blend;
- the update's norm with the norm the declared protocol gives on random inputs of the
  domain from the same start parameters (`fedsim.auditor.preflight.simulated_update`),
  where the declared defense states no mechanism: a ratio beyond `NORM_RATIO` either
  way points at wrong `local_steps`, `lr`, `optimizer` or `batch_size`. Real data and
  random inputs differ, so the bound is wide and the check only speaks of orders of
  magnitude;
- with proxy data, instead, the update with the median of proxy clients trained as
  declared on the server's data, defense included (`fedsim.auditor.proxy`): its norm
  within `PROXY_RATIO`, each weight matrix's within `NORM_RATIO` (small batches vary from
  client to client), and no layer unchanged that the proxy clients change;
- where the declared mechanism states additive noise (`noise`, `noise_scale`, see
  `attacks.likelihood`), the update's root mean square per coordinate with that noise's
  standard deviation: an update quieter than half of it did not carry the declared noise.

Each kind of mismatch is logged once per run, as a warning naming the client and round.
"""

from __future__ import annotations

import logging
import math
import statistics

import torch

NORM_RATIO = 10.0
"""Observed / simulated update norm beyond which (or below whose inverse) the check warns."""
PROXY_RATIO = 3.0
"""The same against the median of proxy clients (`fedsim.auditor.proxy`), whole update."""

logger = logging.getLogger("fedsim.auditor")


def update_norm(update: list[torch.Tensor]) -> float:
    return math.sqrt(sum(float(u.double().square().sum()) for u in update))


class ProtocolCheck:
    """Compares each audited reply with the declared protocol; warns once per kind."""

    def __init__(self, batch_size: int, protocol_text: str, mechanism: object | None) -> None:
        self.batch_size = batch_size
        self.protocol_text = protocol_text
        self.mechanism = mechanism
        self.warned: set[str] = set()

    @property
    def noisy(self) -> bool:
        """A mechanism is declared, so the clean update's norm says little."""
        return self.mechanism is not None

    def noise_std(self) -> float | None:
        """The per-coordinate std of the declared mechanism's additive noise, if it states one."""
        noise = getattr(self.mechanism, "noise", None)
        scale = getattr(self.mechanism, "noise_scale", None)
        if noise is None or scale is None:
            return None
        return float(scale) * (math.sqrt(2.0) if noise == "laplacian" else 1.0)

    def _warn(self, kind: str, message: str) -> None:
        if kind not in self.warned:
            self.warned.add(kind)
            logger.warning("%s (reported once)", message)

    def weight(self, server_round: int, client: int, weight: object, key: str) -> None:
        """The reply's example count against the declared batch size."""
        if (
            isinstance(weight, int | float)
            and not isinstance(weight, bool)
            and weight != self.batch_size
        ):
            self._warn(
                "weight",
                f"round {server_round}: client {client} reports {key}={weight:g} but the auditor "
                f"was told batch_size={self.batch_size}; if it trained on {weight:g} samples, "
                f"set batch_size={weight:g} (and local_steps to match)",
            )

    def noise(self, server_round: int, client: int, observed: float, size: int) -> None:
        """The observed update's RMS per coordinate against the declared noise's std."""
        std = self.noise_std()
        if std is None or size == 0:
            return
        rms = observed / math.sqrt(size)
        if rms < 0.5 * std:
            self._warn(
                "noise",
                f"round {server_round}: client {client}'s update has RMS {rms:.3g} per "
                f"coordinate, below the noise std {std:.3g} of the declared defense: the "
                "clients add less noise than declared, and the attacks model the wrong mechanism",
            )

    def norm(
        self, server_round: int, client: int, observed: float, simulated: float | None
    ) -> None:
        """The observed update norm against the declared protocol's on random inputs."""
        if self.noisy or simulated is None or simulated <= 0:
            return
        if observed == 0.0:
            self._warn(
                "zero",
                f"round {server_round}: client {client} sent back the weights it received "
                "(a zero update): it did not train, or trains other parameters",
            )
            return
        ratio = observed / simulated
        if ratio > NORM_RATIO or ratio < 1 / NORM_RATIO:
            self._warn(
                "norm",
                f"round {server_round}: client {client}'s update norm {observed:.3g} is "
                f"{ratio:.3g}× what the declared protocol ({self.protocol_text}) gives on "
                f"random inputs ({simulated:.3g}); check local_steps, lr, optimizer and "
                "batch_size",
            )

    def against_proxy(
        self,
        server_round: int,
        client: int,
        observed: list[torch.Tensor],
        reference: list[list[torch.Tensor]],
        names: list[str],
    ) -> None:
        """The reply's update against the median of proxy clients' updates at the declared
        batch size (the same protocol and defense on data of the same kind): its norm
        within `PROXY_RATIO`, each weight's (2-D and up) within `NORM_RATIO`, and no layer
        left unchanged that the proxy clients change."""
        if not reference:
            return
        whole = update_norm(observed)
        expected = statistics.median(update_norm(r) for r in reference)
        if expected > 0 and whole > 0 and not _within(whole / expected, PROXY_RATIO):
            self._warn(
                "proxy",
                f"round {server_round}: client {client}'s update norm {whole:.3g} is "
                f"{whole / expected:.3g}× that of proxy clients trained as declared "
                f"({self.protocol_text}) on proxy data ({expected:.3g}); check local_steps, lr, "
                "optimizer, batch_size and the defense",
            )
        off = []
        for index, name in enumerate(names):
            mine = float(observed[index].double().norm())
            theirs = statistics.median(float(r[index].double().norm()) for r in reference)
            if theirs > 0 and mine == 0:
                off.append(f"{name} unchanged")
            elif (
                observed[index].ndim >= 2 and theirs > 0 and not _within(mine / theirs, NORM_RATIO)
            ):
                off.append(f"{name} {mine / theirs:.3g}×")
        if off:
            self._warn(
                "proxy-layers",
                f"round {server_round}: client {client}'s update differs per layer from proxy "
                f"clients trained as declared: {', '.join(off[:4])}"
                + (f" and {len(off) - 4} more" if len(off) > 4 else "")
                + "; the attacks may model the wrong training",
            )


def _within(ratio: float, bound: float) -> bool:
    return 1 / bound <= ratio <= bound
