"""TRL's GRPOTrainer on the same task as rlq's `tune … method grpo` (scripts/bench-tune.sh).

Same model folder, the same questions (a csv of rlq's `arith`: every step uses all of them), G = 8, the same number of questions per step and new tokens, β 0.04, ε 0.2,
loss `grpo` (per-sequence mean, then mean: METHOD.md §7.1), std-normalised advantages, AdamW
β 0.9/0.99, weight decay 0.1, grad-norm clip 0.1, full fine-tune in f32 on the CPU.
Times two optimizer steps and reports the second (steady state).
  python benches/grpo_trl.py MODEL_DIR QUESTIONS.csv TOKENS THREADS OUT.json [MIN_TOKENS]
MIN_TOKENS (default 0) is HF's `min_new_tokens`: no end of sequence before it.
"""
import json
import sys
import time

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

model_dir, questions_csv, tokens, threads, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
min_tokens = int(sys.argv[6]) if len(sys.argv) > 6 else 0
torch.set_num_threads(threads)
tok = AutoTokenizer.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)

import csv

rows = list(csv.DictReader(open(questions_csv)))
prompts = [[{"role": "user", "content": r["prompt"]}] for r in rows]
answers = [r["expected"] for r in rows]
ds = Dataset.from_dict({"prompt": prompts, "expected": answers})
questions = len(rows)


def reward(completions, expected, **_):
    import re
    out = []
    for c, e in zip(completions, expected):
        text = c[0]["content"] if isinstance(c, list) else c
        nums = re.findall(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
        out.append(1.0 if nums and float(nums[-1]) == float(e) else 0.0)
    return out


class Timer(TrainerCallback):
    def __init__(self):
        self.starts, self.ends = [], []

    def on_step_begin(self, args, state, control, **kw):
        self.starts.append(time.perf_counter())

    def on_step_end(self, args, state, control, **kw):
        self.ends.append(time.perf_counter())


cfg = GRPOConfig(
    output_dir=out + ".trl",
    use_cpu=True,
    bf16=False,
    num_generations=8,
    per_device_train_batch_size=8 * questions,
    gradient_accumulation_steps=1,
    max_completion_length=tokens,
    temperature=1.0,
    beta=0.04,
    epsilon=0.2,
    loss_type="grpo",
    scale_rewards="group",
    learning_rate=1e-5,
    adam_beta1=0.9,
    adam_beta2=0.99,
    weight_decay=0.1,
    max_grad_norm=0.1,
    lr_scheduler_type="cosine",
    warmup_steps=0,
    max_steps=2,
    logging_steps=1,
    save_strategy="no",
    report_to="none",
    gradient_checkpointing=False,
    seed=1,
    generation_kwargs={"min_new_tokens": min_tokens} if min_tokens else None,
)
timer = Timer()
trainer = GRPOTrainer(model=model, reward_funcs=reward, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[timer])
trainer.train()
logs = [l for l in trainer.state.log_history if "loss" in l]
step = timer.ends[-1] - timer.starts[-1]
import resource
json.dump({
    "step_seconds": step,
    "completion_len": logs[-1].get("completions/mean_length", float("nan")),
    "peak_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "versions": {"torch": torch.__version__, "trl": __import__("trl").__version__, "transformers": __import__("transformers").__version__},
    "log": logs,
}, open(out, "w"))
print(json.dumps({"step_seconds": step}))
