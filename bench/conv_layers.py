"""Per-layer convolution timings: forward, input gradient (d/dx) and filter gradient (d/dW).

ResNet18's layer shapes at 64 px, batch 64, for XLA's convolution, the CPU formulation
(`ctxfuse_jax.ops.conv.cpu_conv`) and PyTorch, each in its own worker, interleaved.

    PYTHONPATH=. python -m bench.conv_layers [--cpus 1]
"""

import argparse
import dataclasses
import time
from typing import Any, Callable

from bench import harness


@dataclasses.dataclass(frozen=True)
class Layer:
    name: str
    size: int  # Input height = width.
    cin: int
    cout: int
    kernel: int
    stride: int
    count: int  # How many convs of this shape one ResNet18 has.

    @property
    def padding(self) -> int:
        return self.kernel // 2

    @property
    def out_size(self) -> int:
        return (self.size + 2 * self.padding - self.kernel) // self.stride + 1

    def shapes_nhwc(self) -> tuple[tuple[int, ...], ...]:
        """Input, HWIO kernel and output shapes."""
        return ((BATCH, self.size, self.size, self.cin), (self.kernel, self.kernel, self.cin, self.cout),
                (BATCH, self.out_size, self.out_size, self.cout))

    def shapes_nchw(self) -> tuple[tuple[int, ...], ...]:
        """Input, OIHW kernel and output shapes."""
        return ((BATCH, self.cin, self.size, self.size), (self.cout, self.cin, self.kernel, self.kernel),
                (BATCH, self.cout, self.out_size, self.out_size))


BATCH = 64
RESNET18_64PX = (
    Layer("conv1 7x7/2", 64, 3, 64, 7, 2, 1),
    Layer("layer1 3x3", 16, 64, 64, 3, 1, 4),
    Layer("layer2 3x3/2", 16, 64, 128, 3, 2, 1),
    Layer("layer2 1x1/2", 16, 64, 128, 1, 2, 1),
    Layer("layer2 3x3", 8, 128, 128, 3, 1, 3),
    Layer("layer3 3x3/2", 8, 128, 256, 3, 2, 1),
    Layer("layer3 1x1/2", 8, 128, 256, 1, 2, 1),
    Layer("layer3 3x3", 4, 256, 256, 3, 1, 3),
    Layer("layer4 3x3/2", 4, 256, 512, 3, 2, 1),
    Layer("layer4 1x1/2", 4, 256, 512, 1, 2, 1),
    Layer("layer4 3x3", 2, 512, 512, 3, 1, 3),
)
PIECES = ("fwd", "d/dx", "d/dW")


def timed(fns: dict[str, Callable[[], Any]]) -> harness.Parts:
    """Runs each function once; their durations by name."""
    parts = harness.Parts()
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        parts[name] = time.perf_counter() - start
    return parts


def workloads(cpus: tuple[int, ...] | None) -> dict[str, harness.Workload]:
    return {"XLA conv": harness.Workload("bench.jax_workloads:conv_layer_pieces", {"conv": "xla"}, BATCH, cpus),
            "CPU conv": harness.Workload("bench.jax_workloads:conv_layer_pieces", {"conv": "cpu"}, BATCH, cpus),
            "PyTorch": harness.Workload("bench.torch_workloads:conv_layer_pieces", {}, BATCH, cpus,
                                        tune_host_memory=False)}


def table(results: dict[str, harness.Result], layers: tuple[Layer, ...] = RESNET18_64PX) -> str:
    """Milliseconds per piece and layer; the total weights each shape by its count in ResNet18."""
    names = list(results)
    lines = ["| layer (in -> out, count) | piece | " + " | ".join(f"{n} (ms)" for n in names) + " |",
             "|---|---|" + "---:|" * len(names)]
    totals = {n: 0.0 for n in names}
    for layer in layers:
        for piece in PIECES:
            key = f"{layer.name} {piece}"
            ms = {n: 1e3 * results[n].part_median_s(key) for n in names}
            skip_dx = layer.name.startswith("conv1") and piece == "d/dx"  # The image needs no gradient.
            for n in names:
                totals[n] += 0 if skip_dx else layer.count * ms[n]
            lines.append(f"| {layer.name} {layer.size}x{layer.size}x{layer.cin} -> {layer.cout} (x{layer.count}) "
                         f"| {piece} | " + " | ".join(f"{ms[n]:.1f}" for n in names) + " |")
    lines.append("| **ResNet18 total** (fwd + d/dW + d/dx but conv1's) | | "
                 + " | ".join(f"**{totals[n]:.0f}**" for n in names) + " |")
    return "\n".join(lines)


def main(cpus: tuple[int, ...] | None = None, rounds: int = 3) -> str:
    return table(harness.compare(workloads(cpus), rounds=rounds, steps=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpus", type=int, default=0, help="pin each worker to this many CPUs (0: all)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(main(tuple(range(args.cpus)) if args.cpus else None, args.rounds))
