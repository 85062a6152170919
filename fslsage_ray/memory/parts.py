"""A memory plan's vocabulary: named parts, per actor kind, and how they add up to a peak.

Parts that live through the whole run are `resident`; the others belong to one phase of a
round (a local step, an alignment, an evaluation, the driver's aggregation or checkpoint),
and phases follow one another, so an actor's peak is its resident parts plus its largest
phase, not the sum of everything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

MIB = 2**20
RESIDENT = "resident"
PHASES = ("step", "align", "eval", "aggregate", "checkpoint")

# One working process before any model or data: Python, torch, this package, and for an
# actor Ray's worker, after one tiny convolution step with Adam. That step matters: torch's
# CPU kernels (oneDNN), its thread pool and allocator caches come alive on the first real
# step and add about 160 MiB, which a model's own parts do not account for. Measured on this
# project's 2-core CPU machine (torch 2.14.1+cu130, Ray 2.60, Python 3.11, 2026-12-05), peak
# RSS (VmHWM): a Ray actor that imported the runtime, experiment, models and tasks, 596 MiB,
# and 756 MiB after the step; a plain Python process the same way, 673 MiB after the step.
# (Import-only, the first cut of this plan used 568 MiB and left whole actors 34-38% above
# the plan on the quick start; see benchmarks/RESULTS.md.) RSS counts torch's shared
# libraries in every process; USS (what each more process really adds on a node) is about
# 260 MiB less (measured import-only). A CPU-only torch build maps less.
BASELINE_RSS = {"ray worker": 756 * MIB, "python + torch": 673 * MIB}
BASELINE_USS = {"ray worker": 308 * MIB, "python + torch": 284 * MIB}


@dataclass(frozen=True)
class Part:
    name: str
    nbytes: int
    phase: str = RESIDENT  # RESIDENT or one of PHASES
    on_device: bool = True  # on the GPU when the process computes on one (else host memory)
    note: str = ""


@dataclass(frozen=True)
class ActorMemory:
    """One kind of process: `count` of them, the busiest hosting `clients` clients."""

    kind: str  # client actor | server actor | driver | in-process
    count: int
    clients: int
    parts: tuple[Part, ...]
    baseline: int  # the process before any model or data (BASELINE_RSS)

    def _sum(self, phase: str, device: bool | None) -> int:
        return sum(
            p.nbytes
            for p in self.parts
            if p.phase == phase and (device is None or p.on_device == device)
        )

    def peak(self, device: bool | None = None) -> int:
        """Resident parts plus the largest phase; device=None: every part (a CPU run),
        True: the GPU's parts, False: the host's parts of a GPU run (baseline not added)."""
        return self._sum(RESIDENT, device) + max(self._sum(p, device) for p in PHASES)

    def peak_phase(self, device: bool | None = None) -> str:
        return max(PHASES, key=lambda p: self._sum(p, device))

    @property
    def cpu_total(self) -> int:
        """The process's resident memory on a CPU run: baseline and every part's peak."""
        return self.baseline + self.peak()

    @property
    def gpu_total(self) -> int:
        """Bytes torch's allocator holds on the GPU at the peak (max_memory_allocated); the
        CUDA context, cuDNN/cuBLAS workspaces and the caching allocator's free blocks are
        not counted."""
        return self.peak(True)

    @property
    def host_total_with_gpu(self) -> int:
        return self.baseline + self.peak(False)


@dataclass(frozen=True)
class MemoryPlan:
    algorithm: str
    backend: str
    batch_size: int
    actors: tuple[ActorMemory, ...]
    object_store: int  # Ray's shared memory on the driver's node: data, in-flight uploads
    notes: tuple[str, ...] = field(default=())

    def actor(self, kind: str) -> ActorMemory:
        return next(a for a in self.actors if a.kind == kind)

    def to_dict(self) -> dict:
        out = asdict(self)
        for entry, actor in zip(out["actors"], self.actors, strict=True):
            entry["cpu_total"] = actor.cpu_total
            entry["gpu_total"] = actor.gpu_total
            entry["host_total_with_gpu"] = actor.host_total_with_gpu
            entry["peak_phase"] = actor.peak_phase()
        return out

    def lines(self) -> list[str]:
        """A table per actor kind: every part in MiB, where it lives on a GPU run, phase."""
        out = [
            f"memory plan ({self.algorithm}, batch {self.batch_size}, {self.backend}): "
            "MiB; 'phase' parts are not all held at once, the peak adds the largest phase"
        ]
        for actor in self.actors:
            who = f"{actor.kind} x {actor.count}" + (
                f", up to {actor.clients} clients each" if actor.clients else ""
            )
            out.append(f"{who}:")
            out.append(f"  {'part':<60} {'MiB':>10}  {'phase':<10} on GPU run")
            out.append(
                f"  {'process baseline (Python, torch, Ray)':<60} "
                f"{actor.baseline / MIB:>10.1f}  {RESIDENT:<10} host"
            )
            for p in actor.parts:
                where = "GPU" if p.on_device else "host"
                out.append(f"  {p.name:<60} {p.nbytes / MIB:>10.2f}  {p.phase:<10} {where}")
            out.append(
                f"  peak on CPU: {actor.cpu_total / MIB:.1f} MiB (largest phase: "
                f"{actor.peak_phase()}); on GPU: {actor.gpu_total / MIB:.1f} MiB of tensors "
                f"(CUDA context not counted) + {actor.host_total_with_gpu / MIB:.1f} MiB host"
            )
        out.append(f"object store (shared, per node): {self.object_store / MIB:.1f} MiB")
        out += [f"note: {n}" for n in self.notes]
        return out
