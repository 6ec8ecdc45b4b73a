"""The causal-LM fine-tuning path: answer-only batches, sharded validation, init_from, export, and
short real runs on the Ray Train spine (SmolLM2 + LoRA + DDP; `heavy`: a tiny Llama + full + ZeRO-2)."""

from __future__ import annotations

import random

import pytest
import torch

from recplat.errors import ConfigError
from recplat.models.causal_lm import IGNORE_INDEX, CausalLMSettings, LoraSettings, answer_token_nll
from recplat.recipes.answer_task import AnswerTask, FinetuneSettings, export_trained, instruction_dataset

TITLES = ["Red Lamp", "Blue Mug", "Green Sofa", "Oak Desk", "Steel Kettle", "Wool Rug", "Glass Vase", "Iron Pan"]


def ranking_examples(n: int, seed: int) -> tuple[list[str], list[str]]:
    """MoLoRec-shaped prompts whose answer is the first two candidates: learnable in a few steps."""
    rng = random.Random(seed)
    prompts, answers = [], []
    for _ in range(n):
        history, candidates = rng.sample(TITLES, 2), rng.sample(TITLES, 4)
        prompts.append(f"History: [{'||'.join(history)}]. Candidates: [{'||'.join(candidates)}]. The top 2 are:")
        answers.append("||".join(candidates[:2]))
    return prompts, answers


def test_collate_masks_prompts_and_validation_is_the_mean_answer_nll(tiny_llama_folder):
    prompts, answers = ranking_examples(5, seed=0)
    task = AnswerTask(CausalLMSettings(name=tiny_llama_folder), FinetuneSettings(method="full"), prompts, answers,
                      eval_batch_size=2)
    model = task.build_model().eval()
    batch = task.collate({"prompt": prompts[:2], "answer": answers[:2]})
    fmt = task.model_settings.prompt_format()
    for row in range(2):
        n_prompt = len(fmt.prompt_ids(task.tokenizer, prompts[row]))
        n_answer = len(fmt.answer_ids(task.tokenizer, answers[row]))
        labels = batch["labels"][row].tolist()
        assert labels[:n_prompt] == [IGNORE_INDEX] * n_prompt
        assert labels[n_prompt : n_prompt + n_answer] == batch["input_ids"][row, n_prompt : n_prompt + n_answer].tolist()
        assert set(labels[n_prompt + n_answer :]) <= {IGNORE_INDEX}  # right padding
    with torch.no_grad():
        metrics = task.validate(model)  # batches of 2, 2, 1: the sums make it one mean
        nll, count = answer_token_nll(model, task.tokenize(prompts, answers))
    assert metrics["val_loss"] == pytest.approx(float(nll / count), rel=1e-5)
    assert all(p.requires_grad for p in model.parameters())  # full fine-tuning


def test_lora_run_starts_from_init_from_and_rejects_a_mismatch(tiny_llama_folder, tmp_path):
    source = AnswerTask(CausalLMSettings(name=tiny_llama_folder), FinetuneSettings(lora=LoraSettings(rank=4)))
    model = source.build_model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.fill_(0.01)
    model.save_pretrained(tmp_path / "adapter")

    started = AnswerTask(CausalLMSettings(name=tiny_llama_folder),
                         FinetuneSettings(lora=LoraSettings(rank=4), init_from=str(tmp_path / "adapter"))).build_model()
    weights = {n: p for n, p in started.named_parameters() if "lora_B" in n}
    assert weights and all(torch.all(p == 0.01) and p.requires_grad for p in weights.values())
    with pytest.raises(ConfigError, match="r 4 vs 8"):
        AnswerTask(CausalLMSettings(name=tiny_llama_folder),
                   FinetuneSettings(lora=LoraSettings(rank=8), init_from=str(tmp_path / "adapter"))).build_model()
    with pytest.raises(ValueError, match="init_from"):
        FinetuneSettings(method="full", init_from=str(tmp_path / "adapter"))


@pytest.mark.heavy  # 1.5 min: SmolLM2 (135M) on 2 workers; two workers on the tiny Llama are in the default run (tests/recipes/test_cprec.py)
def test_smollm2_lora_ddp_smoke_finetune_lowers_the_answer_loss(ray_local, tmp_path):
    """Two DDP workers, 8 LoRA steps on SmolLM2: validation (split over both workers and summed)
    falls, and equals the exported adapter's loss computed in one process."""
    from recplat.models.causal_lm import load_causal_lm
    from recplat.recipes.answer_task import finetune
    from recplat.train.config import TrainConfig

    torch.set_num_threads(1)
    train_prompts, train_answers = ranking_examples(32, seed=1)
    valid_prompts, valid_answers = ranking_examples(6, seed=2)
    settings = CausalLMSettings(name="offline:smollm2", max_length=128)
    task = AnswerTask(settings, FinetuneSettings(lora=LoraSettings(rank=8, alpha=16, dropout=0.0)),
                      valid_prompts, valid_answers, eval_batch_size=3)
    before = task.validate(task.build_model().eval())["val_loss"]

    cfg = TrainConfig(num_workers=2, micro_batch_size=2, max_steps=8, lr=2e-3, schedule="constant",
                      eval_every=4, metric="val_loss", storage_path=str(tmp_path / "runs"), name="smoke")
    result, exported = finetune(task, cfg, instruction_dataset(train_prompts, train_answers), tmp_path / "adapter",
                                best=False)
    history = result.summary["history"]
    assert [h["step"] for h in history] == [4, 8]
    after = history[-1]["val_loss"]
    assert after < 0.7 * before, (before, history)

    model, _ = load_causal_lm(settings, adapter=exported)  # plain peft can read the export
    with torch.no_grad():
        single = task.validate(model)["val_loss"]
    assert single == pytest.approx(after, rel=1e-4)


@pytest.mark.heavy  # 2 min on 2 cores; ZeRO-2 itself is in the default run (tests/train/test_fit.py)
def test_tiny_llama_full_finetune_on_zero2(ray_local, tiny_llama_folder, tmp_path):
    from recplat.models.causal_lm import load_causal_lm
    from recplat.recipes.answer_task import finetune
    from recplat.train.config import TrainConfig

    prompts, answers = ranking_examples(32, seed=3)
    task = AnswerTask(CausalLMSettings(name=tiny_llama_folder), FinetuneSettings(method="full"), prompts[:6], answers[:6])
    before = task.validate(task.build_model().eval())["val_loss"]
    cfg = TrainConfig(strategy="deepspeed", num_workers=2, micro_batch_size=4, max_steps=6, lr=3e-3,
                      eval_every=6, metric="val_loss", storage_path=str(tmp_path / "runs"), name="zero2")
    result, exported = finetune(task, cfg, instruction_dataset(prompts, answers), tmp_path / "model")
    after = result.summary["history"][-1]["val_loss"]
    assert after < before - 0.5, (before, after)
    model, _ = load_causal_lm(CausalLMSettings(name=str(exported)))  # a whole HF folder
    with torch.no_grad():
        assert task.validate(model)["val_loss"] == pytest.approx(after, rel=1e-4)
