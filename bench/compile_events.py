"""Compilations as `jax.monitoring` reports them: how many, of what, and the seconds of each stage.

JAX records up to three durations per compilation (tracing to a jaxpr, lowering to StableHLO, XLA's
backend compile); a backend compile is one compilation. Nested jits are traced but not compiled.

    with CompileEvents() as events:
        run_something()
    events.count, events.seconds, events.parts()
"""

import jax

from bench.harness import Parts

STAGES = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
          "/jax/core/compile/backend_compile_duration": "XLA compile"}
BACKEND = "XLA compile"


class CompileEvents:
    """Records the durations of the compile events of the code inside `with`, by stage."""

    def __init__(self):
        self.durations: dict[str, list[float]] = {stage: [] for stage in STAGES.values()}

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        if event in STAGES:
            self.durations[STAGES[event]].append(duration)

    def __enter__(self) -> "CompileEvents":
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listen)

    @property
    def count(self) -> int:
        return len(self.durations[BACKEND])

    @property
    def seconds(self) -> float:
        return sum(map(sum, self.durations.values()))

    def parts(self) -> Parts:
        """{compilations, total compile seconds, seconds per stage} for `harness.Parts`."""
        return Parts({"compilations": self.count, "compile s": self.seconds,
                      **{f"{stage} s": sum(d) for stage, d in self.durations.items()}})
