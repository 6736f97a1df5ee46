"""Flower's own differential-privacy tools, as the auditing server sees them.

Read from Flower 1.42's code (`flwr.clientapp.mod.LocalDpMod`, `fixedclipping_mod`,
`adaptiveclipping_mod`, `flwr.serverapp.strategy.DifferentialPrivacy*`,
`flwr.supercore.differential_privacy`). Each clips the update δ = sent − received over
all arrays at once (flat clipping, δ·min(1, C/‖δ‖)); they differ in who adds the noise
and so in what this server sees of each client:

| tool | the server receives | mechanism the Bayes attack uses |
|---|---|---|
| `LocalDpMod(C, Δ, ε, δ)` on the client | θ + clip_C(δ) + N(0, s²I), s = Δ·√(2 ln(1.25/δ))/ε | `ClippedGaussianMechanism(C, s)` |
| `fixedclipping_mod` + `DifferentialPrivacyClientSideFixedClipping(z, C, m)` | θ + clip_C(δ), in the clear (the noise z·C/m goes on the aggregate) | `ClippingMechanism(C)` |
| `adaptiveclipping_mod` + `DifferentialPrivacyClientSideAdaptiveClipping` | θ + clip_{C_t}(δ), C_t sent in each round's config | `ClippingMechanism(C_t)` |
| `DifferentialPrivacyServerSide{Fixed,Adaptive}Clipping` | θ + δ, in the clear (clipped and noised after) | none |

Under FedSGD (the auditor reads g = (θ − θ_sent)/lr) clip and noise scale by 1/lr.
Flower draws these noises from numpy's global generator: secret from the server only
while the app does not seed numpy (the tests do, and say so), so the LocalDpMod claim is
recorded with `holds` null (unverified) and says what it depends on.
The clip covers every array Flower sends, buffers included; the mechanisms clip the
candidate's parameters, so they are exact for models without buffers.

ε comes from Flower's own `RdpAccountant` (Google's dp-accounting underneath), as
`defenses.accounting.PrivacyClaim`s, each naming its threat model and whether it holds
against this server (records: `privacy`, a list of claims):

- `LocalDpMod`: user-level local DP against this server. Any two data sets of one
  client give clipped updates at most 2C apart, so each release is a Gaussian mechanism
  of noise multiplier s/(2C); composed over the rounds that client took part in, with
  no amplification (the server knows who took part). The ε a `LocalDpMod` was built
  with uses its own `sensitivity` per round; it is not reported. Being μ-GDP with
  μ = 2C·√R/s, the claim also bounds reconstruction of any of the client's records
  (`reconstruction_bound`, from `audit.threat.kappa`; `defenses.reconstruction`).
- the central wrappers: client-level DP of the released aggregates (add or remove one
  client, no amplification, Flower's accounting model), which holds against those who
  see only the aggregates and not against this server, which saw every update before
  the noise: the claim says so (`holds` false, `why_not`), and so does `server_saw`. Adaptive clipping's
  noisy clipped-count release is part of it: the accountant composes one Gaussian of
  multiplier (z_update⁻² + (2σ_count)⁻²)^(−1/2), the multiplier the wrapper was given
  (Andrew et al., "Differentially Private Learning with Adaptive Clipping", 2021).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flwr.app import Message

from attacks.target import Protocol
from defenses.accounting import PrivacyClaim
from defenses.mechanisms import ClippedGaussianMechanism, ClippingMechanism
from defenses.reconstruction import Kappa, gaussian_steps_bound
from fedsim.errors import ConfigError

logger = logging.getLogger("fedsim.auditor")

NUMPY_NOISE = (
    "Flower's LocalDpMod draws its noise from numpy's global generator, so the claim holds"
    " only if the client app never seeds it with anything the server can know (many apps"
    " call np.random.seed); the server cannot check this. fedsim's defenses.flower.mod"
    " draws from the operating system's entropy instead"
)
"""Why the LocalDpMod claim is unverified rather than holding."""

CLIPPING_NORM_KEY = "clipping_norm"
"""The train-config entry in which Flower's client-side wrappers send the clipping norm."""


def localdp_std(sensitivity: float, epsilon: float, delta: float) -> float:
    """The noise std `LocalDpMod` adds: Δ·√(2 ln(1.25/δ))/ε (Flower 1.42)."""
    return sensitivity * math.sqrt(2 * math.log(1.25 / delta)) / epsilon


def rdp_epsilon(
    noise_multiplier: float, releases: int, delta: float, sample: int = 1, population: int = 1
) -> float:
    """ε at δ of `releases` Gaussian releases of `noise_multiplier`, no amplification,
    add-or-remove-one neighbours, from Flower's `RdpAccountant`."""
    from flwr.serverapp import (
        GaussianPrivacyEvent,
        NeighboringRelation,
        PrivacyConfig,
        RdpAccountant,
        SamplingMethod,
    )

    if releases <= 0:
        return 0.0
    accountant = RdpAccountant(
        PrivacyConfig(
            target_delta=delta,
            population_size=population,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE,
            sampling_method=SamplingMethod.NO_AMPLIFICATION,
        )
    )
    event = GaussianPrivacyEvent(noise_multiplier, sample_size=sample, population_size=population)
    accountant.compose(event, count=releases)
    return float(accountant.get_privacy_spent().epsilon)


@dataclass(frozen=True)
class LocalDp:
    """`LocalDpMod` on the clients: each update clipped to C and noised with std s; `kappa`
    is the baseline of the reconstruction bound its claim carries."""

    clip: float
    std: float
    delta: float
    kappa: Kappa = Kappa(None, "not stated")

    server_saw = "the update clipped and noised by the client (LocalDpMod)"

    @property
    def label(self) -> str:
        return f"LocalDpMod(clipping_norm={self.clip:g}, noise std={self.std:.4g})"

    def mechanism(self, config: Mapping[str, Any] | None, protocol: Protocol) -> Any:
        scale = _gradient_units(protocol)
        return ClippedGaussianMechanism(clip=self.clip * scale, std=self.std * scale)

    def round_fields(self, server_round: int, config: Mapping[str, Any] | None) -> dict[str, Any]:
        return {"server_saw": self.server_saw}

    def client_fields(self, rounds_taken_part: int) -> dict[str, Any]:
        multiplier = self.std / (2 * self.clip)
        claim = PrivacyClaim(
            "user",
            rdp_epsilon(multiplier, rounds_taken_part, self.delta),
            self.delta,
            f"user-level local DP against this server: noise multiplier {multiplier:.3g} "
            f"(std {self.std:.3g} over sensitivity 2·{self.clip:g}: any change to the "
            f"client's data), composed over the {rounds_taken_part} rounds this client "
            "took part in, no amplification (the server knows who took part); "
            "Flower's RdpAccountant",
            holds=None,
            why_not=NUMPY_NOISE,
            reconstruction_bound=gaussian_steps_bound(self.kappa, multiplier, rounds_taken_part),
        )
        return {"privacy": [claim.to_json()]}


@dataclass(frozen=True)
class CentralDp:
    """One of Flower's central-DP wrappers: noise on the aggregate, added by the server."""

    tool: str
    client_clipping: bool
    adaptive: bool
    clip: float
    noise_multiplier: float
    """Of the whole release (adaptive: updates and clipped count together)."""
    num_sampled: int
    population: int
    delta: float

    @property
    def label(self) -> str:
        return f"{self.tool}(noise_multiplier={self.noise_multiplier:.4g}, on the aggregate)"

    @property
    def server_saw(self) -> str:
        if self.client_clipping:
            return (
                "the update clipped by the client, in the clear: the server adds the noise "
                f"to the aggregate ({self.tool})"
            )
        return f"the clear update: the server clips it and noises the aggregate ({self.tool})"

    def round_clip(self, config: Mapping[str, Any] | None) -> float:
        """The round's clipping norm: as sent in its train config, else the wrapper's."""
        if config is not None and isinstance(config.get(CLIPPING_NORM_KEY), int | float):
            return float(config[CLIPPING_NORM_KEY])
        return self.clip

    def mechanism(self, config: Mapping[str, Any] | None, protocol: Protocol) -> Any:
        if not self.client_clipping:
            return None
        return ClippingMechanism(self.round_clip(config) * _gradient_units(protocol))

    def round_fields(self, server_round: int, config: Mapping[str, Any] | None) -> dict[str, Any]:
        fields: dict[str, Any] = {"server_saw": self.server_saw}
        if self.client_clipping:
            fields["clipping_norm"] = self.round_clip(config)
        if self.noise_multiplier > 0:
            claim = PrivacyClaim(
                "user",
                rdp_epsilon(
                    self.noise_multiplier,
                    server_round,
                    self.delta,
                    self.num_sampled,
                    self.population,
                ),
                self.delta,
                f"client-level central DP of the released aggregates ({self.tool}): add or "
                f"remove one client, noise multiplier {self.noise_multiplier:.3g}, "
                f"{server_round} releases, no amplification; Flower's RdpAccountant",
                holds=False,
                why_not=(
                    "it holds against those who see only the aggregates; this server saw "
                    "each client's update before the noise was added"
                ),
            )
            fields["privacy"] = [claim.to_json()]
        return fields

    def client_fields(self, rounds_taken_part: int) -> dict[str, Any]:
        return {}


FlowerPrivacy = LocalDp | CentralDp


def deployment_kappa(stated: float | None) -> Kappa:
    """κ for a Flower app's auditor: as stated (`audit.threat.kappa`), else unknown."""
    if stated is not None:
        return Kappa(stated, "stated by the audit (audit.threat.kappa)")
    return Kappa(
        None,
        "no data set is known to the auditor to measure κ on: state audit.threat.kappa "
        "(fedsim.metrics.guess_baseline measures it)",
    )


def recognise(inner: Any, defense: Any, delta: float) -> FlowerPrivacy | None:
    """Flower's DP tool in `defense` (a `LocalDpMod`) or around `inner` (a DP wrapper), or None.

    `delta` is the δ of the central wrappers' ε where they carry no accountant.
    """
    from flwr.clientapp.mod import LocalDpMod

    wrapper = _dp_wrapper(inner)
    if isinstance(defense, LocalDpMod):
        if wrapper is not None:
            raise ConfigError(
                f"defense: LocalDpMod together with {type(wrapper).__name__} is not modelled; "
                "audit one of them"
            )
        privacy = LocalDp(
            clip=float(defense.clipping_norm),
            std=localdp_std(defense.sensitivity, defense.epsilon, defense.delta),
            delta=float(defense.delta),
        )
        if defense.sensitivity < 2 * defense.clipping_norm:
            logger.warning(
                "LocalDpMod: sensitivity %g is below 2 × clipping_norm (%g): the ε it was built "
                "with does not hold against a server that sees the update; the records give ε "
                "for sensitivity %g",
                defense.sensitivity,
                2 * defense.clipping_norm,
                2 * defense.clipping_norm,
            )
        return privacy
    if wrapper is None:
        return None
    return _central(wrapper, delta)


def train_config(messages: list[Message]) -> dict[str, Any]:
    """The train config the round's first message carries (Flower's client-side DP
    wrappers put the clipping norm in it)."""
    if not messages:
        return {}
    records = messages[0].content.config_records.values()
    return {k: v for record in records for k, v in record.items()}


def _dp_wrapper(strategy: Any) -> Any:
    """The first of Flower's DP wrappers in the chain of wrapped strategies, or None."""
    from flwr.serverapp.strategy.dp_adaptive_clipping import DifferentialPrivacyAdaptiveBase
    from flwr.serverapp.strategy.dp_fixed_clipping import DifferentialPrivacyFixedClippingBase

    seen = set()
    while strategy is not None and id(strategy) not in seen:
        seen.add(id(strategy))
        if isinstance(
            strategy, DifferentialPrivacyFixedClippingBase | DifferentialPrivacyAdaptiveBase
        ):
            return strategy
        strategy = getattr(strategy, "strategy", None) or getattr(strategy, "inner", None)
    return None


def _central(wrapper: Any, delta: float) -> CentralDp:
    from flwr.serverapp.strategy import (
        DifferentialPrivacyClientSideAdaptiveClipping,
        DifferentialPrivacyClientSideFixedClipping,
    )
    from flwr.serverapp.strategy.dp_adaptive_clipping import DifferentialPrivacyAdaptiveBase

    adaptive = isinstance(wrapper, DifferentialPrivacyAdaptiveBase)
    multiplier = float(wrapper.noise_multiplier)
    if adaptive and multiplier > 0 and wrapper.clipped_count_stddev > 0:
        count = 2 * float(wrapper.clipped_count_stddev)
        multiplier = (multiplier**-2 + count**-2) ** -0.5
    accountant = getattr(wrapper, "accountant", None)
    population = int(wrapper.num_sampled_clients)
    if accountant is not None:
        delta = float(accountant.config.target_delta)
        population = int(accountant.config.population_size)
    return CentralDp(
        tool=type(wrapper).__name__,
        client_clipping=isinstance(
            wrapper,
            DifferentialPrivacyClientSideFixedClipping
            | DifferentialPrivacyClientSideAdaptiveClipping,
        ),
        adaptive=adaptive,
        clip=float(wrapper.clipping_norm),
        noise_multiplier=multiplier,
        num_sampled=min(int(wrapper.num_sampled_clients), population),
        population=population,
        delta=delta,
    )


def _gradient_units(protocol: Protocol) -> float:
    """1 for FedAvg deltas; 1/lr where the auditor reads a FedSGD gradient (θ − θ_sent)/lr."""
    return 1.0 / protocol.local_lr if protocol.kind == "fedsgd" else 1.0
