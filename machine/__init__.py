"""This machine: which precision to compute in, and what it has.

Modules: ``precision`` (fp32, bf16 on CPUs with bf16 instructions, fp16 on GPUs, from
``--precision`` and the machine; ``gpu_available``, ``onednn_enabled``), ``resources`` (the
process's and the machine's memory, cgroup limits, the CPU's description). Asks
``console.quiet`` to import TensorFlow (inside the functions); nothing else of the project.
What the network costs here (multiply-adds, a training step) is ``benchmarks.profiling``.
"""
