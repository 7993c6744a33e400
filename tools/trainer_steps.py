"""The trainer's own training step, built in this process from the trainer's flags, and timed:
shared by profile_train.py and bench_interleaved.py; and the split of a tool's command line into
its flags and the trainer's, which bench_train.py shares too."""

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import train_gpt2_mod as m  # noqa: E402


def split_at_dashes(argv):
    """A tool's command line split at its first --: the tool's own flags, then the trainer's."""
    if "--" not in argv:
        return argv, []
    return argv[: argv.index("--")], argv[argv.index("--") + 1 :]


class TrainerSteps:
    """One model, its optimizer, data and kernels as train_gpt2_mod.py builds them from trainer_argv
    (the trainer's command line). The flags are checked at once, and a bad one exits as the trainer
    does, with a one-line error; build() then makes the model, on the device."""

    def __init__(self, trainer_argv):
        self.args = args = m.build_parser().parse_args(trainer_argv)
        try:
            m.check_args(args)
            self.config = m.build_config(args)
            self.grad_accum = m.grad_accumulation_steps(args, 1)
            self.loader = m.DistributedTokenLoader(m.find_shards(args.input_bin, "--input_bin"), args.batch_size, args.sequence_length, 0, 1)
        except m.UsageError as e:
            m.usage_error(e)
        self.tokens_per_step = args.batch_size * args.sequence_length * self.grad_accum

    def build(self):
        try:
            self.ctx = m.setup_context(self.args)
        except m.UsageError as e:
            m.usage_error(e)
        self.raw_model, self.optimizer = m.build_model(self.args, self.ctx, self.config)  # seeded, with its kernels
        self.model = m.compile_model(self.raw_model, self.args.recompute, self.args.cuda_graphs) if self.args.compile else self.raw_model

    def run(self, n, host=None):
        """n training steps, each step's loss read after the next one is launched, as the trainer
        does. Returns each step's ms as the trainer times it: on a GPU from the end of the step
        before (the first from just before its launch) to its end, on the GPU's clock; on a CPU on
        the host's. host, a list, gets each step's (launch, wait) in ms."""
        on_cuda = self.ctx.device.type == "cuda"
        marks = []  # where each step ended, after where the first could start
        if on_cuda:
            torch.cuda.synchronize()
            marks.append(torch.cuda.Event(enable_timing=True))
            marks[0].record()
        else:
            marks.append(time.perf_counter())
        previous = None
        for _ in range(n):
            launched = time.perf_counter()
            loss, _ = m.train_step(self.model, self.raw_model, self.optimizer, self.loader, self.grad_accum, self.args.grad_clip, self.ctx)
            queued = time.perf_counter()
            if previous is not None:
                previous.tolist()
                if host is not None:
                    host.append(((queued - launched) * 1e3, (time.perf_counter() - queued) * 1e3))
            previous = m.HostCopy(loss)
            marks.append(previous.ready if on_cuda else queued)
        previous.tolist()
        if on_cuda:
            return [start.elapsed_time(end) for start, end in zip(marks, marks[1:])]
        return [(end - start) * 1e3 for start, end in zip(marks, marks[1:])]
