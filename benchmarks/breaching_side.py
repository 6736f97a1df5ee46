"""The breaching half of `versus_breaching.py`; runs inside breaching's own environment.

Reads a request (torch file: pixel images, labels, a model seed, iterations, snapshot
spacing, batch-norm mode), builds breaching's `1_single_image_small` case model from that
seed, computes each image's update with breaching's own user, runs breaching's Inverting
Gradients attacker on it and writes the model weights, the updates, the reconstructions
in pixel space, the attack's wall time and (iteration, seconds, image) snapshots.

    BREACHING_PYTHON benchmarks/breaching_side.py REQUEST.pt REPLY.pt

It imports torch and breaching only (no fedsim). breaching's data loaders are not
used: they would download CIFAR-10 through torchvision and check its archive; the
images come in the request and enter through the user's `custom_data` argument.
"""

from __future__ import annotations

import sys
import time

import torch


def _case(iterations: int, public_buffers: bool):
    import breaching

    overrides = [
        "case=1_single_image_small",
        "attack=invertinggradients",
        f"attack.optim.max_iterations={iterations}",
        f"case.server.provide_public_buffers={public_buffers}",
    ]
    return breaching.get_config(overrides=overrides)


def _snapshotting(attacker, every: int, clock: dict, snapshots: list) -> None:
    """Wrap the attacker's optimiser so that every `every` steps the current (boxed)
    candidate is kept with the seconds since the attack began."""
    build = attacker._init_optimizer

    def init_optimizer(candidates):
        optimizer, scheduler = build(candidates)
        step, count = optimizer.step, {"n": 0}

        def stepped(closure=None):
            if count["n"] % every == 0:
                seconds = time.perf_counter() - clock["start"]
                snapshots.append((count["n"], seconds, candidates[0][0].detach().clone()))
            count["n"] += 1
            return step(closure)

        optimizer.step = stepped
        return optimizer, scheduler

    attacker._init_optimizer = init_optimizer


def main(request_path: str, reply_path: str) -> None:
    import breaching
    from breaching.cases.users import UserSingleStep

    request = torch.load(request_path)
    torch.set_num_threads(int(request["threads"]))
    cfg = _case(int(request["iterations"]), not bool(request["train_mode"]))
    setup = {"device": torch.device("cpu"), "dtype": torch.float}
    torch.manual_seed(int(request["model_seed"]))
    model, loss_fn = breaching.cases.construct_model(
        cfg.case.model, cfg.case.data, pretrained=cfg.case.server.pretrained
    )
    server = breaching.cases.construct_server(model, loss_fn, cfg.case, setup)
    model = server.vet_model(model)
    mean = torch.tensor(cfg.case.data.mean).view(1, 3, 1, 1)
    std = torch.tensor(cfg.case.data.std).view(1, 3, 1, 1)

    results = []
    for image, label in zip(request["images"], request["labels"], strict=True):
        user = UserSingleStep(model, loss_fn, None, setup, idx=0, cfg_user=cfg.case.user)
        user.data_key = "inputs"  # set by the data loader path, which custom data skips
        payload = server.distribute_payload()
        data = {"inputs": (image[None] - mean) / std, "labels": label.view(1)}
        shared, _ = user.compute_local_updates(payload, custom_data=data)
        attacker = breaching.attacks.prepare_attack(server.model, server.loss, cfg.attack, setup)
        torch.manual_seed(int(request["attack_seed"]))
        clock, snapshots = {}, []
        _snapshotting(attacker, int(request["snapshot_every"]), clock, snapshots)
        clock["start"] = time.perf_counter()
        reconstruction, _ = attacker.reconstruct([payload], [shared], {}, dryrun=False)
        seconds = time.perf_counter() - clock["start"]

        def pixels(x: torch.Tensor) -> torch.Tensor:
            return (x * std[0] + mean[0]).clamp(0, 1)

        results.append(
            {
                "update": [g.detach().clone() for g in shared["gradients"]],
                "inputs": pixels(reconstruction["data"][0].detach()),
                "seconds": seconds,
                "snapshots": [(i, s, pixels(x)) for i, s, x in snapshots],
            }
        )
    state = {k.removeprefix("model."): v for k, v in model.model.state_dict().items()}
    torch.save(
        {
            "state_dict": state,
            "mean": [float(v) for v in cfg.case.data.mean],
            "std": [float(v) for v in cfg.case.data.std],
            "results": results,
            "torch": str(torch.__version__),
            "breaching": getattr(breaching, "__version__", "0.1.2"),
            "train_mode": bool(request["train_mode"]),
            "attack_config": dict(
                tv=float(cfg.attack.regularization.total_variation.scale),
                lr=float(cfg.attack.optim.step_size),
                iterations=int(cfg.attack.optim.max_iterations),
            ),
        },
        reply_path,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
