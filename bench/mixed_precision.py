"""Mixed precision (bf16 compute, f32 parameters): does a short training follow the f32 one?

Both runs start from the same parameters and see the same batch; the table gives the loss of
each step and their difference. Not a timing: throughput is measured by `bench.run_all`.

    PYTHONPATH=. python -m bench.mixed_precision
"""

from bench import jax_workloads

DTYPES = ("float32", "bfloat16")


def loss_curves(steps: int = 12, batch: int = 64, size: int = 64) -> dict[str, list[float]]:
    curves = {}
    for dtype in DTYPES:
        step = jax_workloads.classifier_train_step("resnet18", "auto", batch, size, dtype=dtype)
        curves[dtype] = [float(step()["loss"]) for _ in range(steps)]
    return curves


def table(curves: dict[str, list[float]]) -> str:
    f32, bf16 = (curves[d] for d in DTYPES)
    lines = ["| step | f32 loss | bf16 loss | difference |", "|---:|---:|---:|---:|"]
    lines += [f"| {i + 1} | {a:.4f} | {b:.4f} | {b - a:+.4f} |" for i, (a, b) in enumerate(zip(f32, bf16))]
    worst = max(abs(b - a) for a, b in zip(f32, bf16))
    lines.append(f"\nLargest difference {worst:.4f}; loss fell {f32[0] - f32[-1]:.3f} (f32) "
                 f"and {bf16[0] - bf16[-1]:.3f} (bf16) over {len(f32)} steps.")
    return "\n".join(lines)


def main() -> str:
    return table(loss_curves())


if __name__ == "__main__":
    print(main())
