"""HellaSwag scoring on hand-written examples in the dataset's jsonl format."""

import json
from contextlib import nullcontext

import pytest
import torch
import torch.nn as nn

from conftest import SHORT_TRAIN, read_metrics, run_trainer
from train_gpt2_mod import RunContext, UsageError, gpt2_encoding, hellaswag_counts, main, read_hellaswag

EXAMPLES = [
    {"ctx": "The chef cracked two eggs into the bowl and", "endings": ["whisked them quickly with a fork.", "flew to the moon.", "sang the national anthem loudly.", "painted the garage door blue."], "label": 0},
    {"ctx": "A man is standing on a ladder. He", "endings": ["eats a sandwich underwater.", "reads the newspaper in space.", "cleans the gutter of the house.", "dances with a giraffe."], "label": 2},
    {"ctx": "The children ran onto the field and", "endings": ["melted into the ground.", "turned into birds.", "argued with the clouds.", "started kicking the ball around."], "label": 3},
    {"ctx": "She opened the umbrella because", "endings": ["the sun ate breakfast.", "it had started to rain.", "her shoes were purple.", "the piano was out of tune."], "label": 1},
    {"ctx": "He plugged in the kettle to", "endings": ["boil water for tea.", "wash the car.", "climb the mountain.", "repair the bicycle."], "label": 0},
]


def write_examples(path, examples=EXAMPLES):
    path.write_text("".join(json.dumps(e) + "\n" for e in examples))
    return path


class FavoringModel(nn.Module):
    """A stand-in language model that gives the tokens of the right endings a high logit."""

    def __init__(self, examples):
        super().__init__()
        enc = gpt2_encoding()
        self.favored = sorted({t for e in examples for t in enc.encode_ordinary(" " + e["endings"][e["label"]])})

    def forward(self, idx, targets=None):
        logits = torch.zeros(*idx.shape, 50304)
        logits[..., self.favored] = 8.0
        return logits, None


def cpu_context(rank=0, world_size=1):
    return RunContext(rank, rank, world_size, torch.device("cpu"), torch.float32, nullcontext())


def counts(examples, rank=0, world_size=1):
    model = FavoringModel(examples)
    return hellaswag_counts(model, examples, gpt2_encoding(), cpu_context(rank, world_size), max_len=1024).tolist()


def test_a_model_that_favors_the_right_endings_picks_them():
    assert counts(EXAMPLES) == [5.0, 5.0, 5.0]  # acc, acc_norm, examples


def test_a_model_that_favors_wrong_endings_misses():
    wrong = [dict(e, label=(e["label"] + 1) % 4) for e in EXAMPLES]
    model = FavoringModel(wrong)  # favors the endings that are not the answers
    result = hellaswag_counts(model, EXAMPLES, gpt2_encoding(), cpu_context(), max_len=1024).tolist()
    assert result[2] == 5 and result[1] <= 1


def test_ranks_split_the_examples_without_overlap():
    shares = [counts(EXAMPLES, rank, 3) for rank in range(3)]
    assert [s[2] for s in shares] == [2, 2, 1]  # examples 0,3 | 1,4 | 2: every one exactly once
    assert [sum(s[i] for s in shares) for i in range(3)] == counts(EXAMPLES)


def test_long_contexts_are_cropped_from_the_left():
    long_example = dict(EXAMPLES[0], ctx="word " * 3000 + EXAMPLES[0]["ctx"])
    model = FavoringModel([long_example])
    assert hellaswag_counts(model, [long_example], gpt2_encoding(), cpu_context(), max_len=64).tolist() == [1.0, 1.0, 1.0]


def test_bad_files(tmp_path):
    with pytest.raises(UsageError, match="data/hellaswag.py"):
        read_hellaswag(tmp_path / "missing.jsonl")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(EXAMPLES[0]) + "\n" + json.dumps({"ctx": "x", "endings": ["a", "b"], "label": 0}) + "\n")
    with pytest.raises(UsageError, match="bad.jsonl:2 is not a HellaSwag example"):
        read_hellaswag(bad)
    bad.write_text(json.dumps(dict(EXAMPLES[0], endings=["a", 1, None, "d"])) + "\n")
    with pytest.raises(UsageError, match="bad.jsonl:1 is not a HellaSwag example"):
        read_hellaswag(bad)
    bad.write_bytes(bytes(range(256)))
    with pytest.raises(UsageError, match="bad.jsonl is not UTF-8 text"):
        read_hellaswag(bad)


def test_eval_only_without_hellaswag_scores_the_val_loss_of_the_run(tmp_path, capsys):
    """--eval_only takes the model config, sequence length and val tokens from the checkpoint's run
    (flags win), and works without a HellaSwag file."""
    out = tmp_path / "run"
    flags = [*SHORT_TRAIN, "--n_embd", "32", "--sequence_length", "32", "--val_tokens", "2048", "--num_iterations", "2"]
    main([*flags, "--output_dir", str(out)])
    logged = [r for r in read_metrics(out) if "val_loss" in r][-1]
    capsys.readouterr()
    main(["--eval_only", "1", "--resume_from", "latest", "--output_dir", str(out)])
    assert "(2,048 tokens of 32)" in capsys.readouterr().out
    evaluation = json.loads((out / "eval.jsonl").read_text().splitlines()[-1])
    assert evaluation["val_tokens"] == logged["val_tokens"] == 2048 and "hellaswag_acc" not in evaluation
    assert evaluation["val_loss"] == pytest.approx(logged["val_loss"], abs=1e-5)
    main(["--eval_only", "1", "--resume_from", "latest", "--output_dir", str(out), "--sequence_length", "16"])
    assert "(2,048 tokens of 16)" in capsys.readouterr().out
    missing = str(tmp_path / "no_hellaswag.jsonl")
    proc = run_trainer("--eval_only", "1", "--resume_from", "latest", "--output_dir", str(out), "--hellaswag_file", missing, check=False)
    assert proc.returncode == 2 and "no HellaSwag file" in proc.stderr  # asked for by name: an error


def test_hellaswag_during_training_and_eval_only(tmp_path):
    data = write_examples(tmp_path / "hs.jsonl")
    out = tmp_path / "run"
    main([*SHORT_TRAIN, "--num_iterations", "4", "--hellaswag_every", "2", "--hellaswag_file", str(data), "--output_dir", str(out)])
    records = [r for r in read_metrics(out) if "hellaswag_acc_norm" in r]
    assert [r["step"] for r in records] == [0, 2, 4]
    assert all(r["hellaswag_examples"] == 5 and 0 <= r["hellaswag_acc_norm"] <= 1 for r in records)
    before = (out / "metrics.jsonl").read_text()
    proc = run_trainer(*SHORT_TRAIN, "--eval_only", "1", "--resume_from", "latest", "--hellaswag_file", str(data), "--output_dir", str(out))
    assert "(step 4): val loss" in proc.stdout and "HellaSwag acc_norm" in proc.stdout
    evaluation = json.loads((out / "eval.jsonl").read_text())
    assert evaluation["step"] == 4 and evaluation["hellaswag_examples"] == 5
    assert evaluation["hellaswag_acc_norm"] == records[-1]["hellaswag_acc_norm"]  # the same model, scored the same way
    assert (out / "metrics.jsonl").read_text() == before  # the run's log is untouched


def test_eval_only_needs_a_checkpoint(tmp_path):
    proc = run_trainer(*SHORT_TRAIN, "--eval_only", "1", "--output_dir", str(tmp_path), check=False)
    assert proc.returncode == 2 and "give it with --resume_from" in proc.stderr
